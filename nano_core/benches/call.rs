//! A call through a cell handle vs a direct call in the base image vs a call through a function
//! pointer from `dlsym` into a `dlopen`'d library. Each callee returns a constant; `black_box`
//! keeps every call and its result.

mod support;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use loader::hosted::Hosted;
use loader::{CellSpec, Handle, System};

/// The base image's equivalent of the cell's `f_0`.
#[inline(never)]
fn direct_f0() -> u64 {
    black_box(0)
}

/// The base image's equivalent of the cell's `c_f_0`.
#[inline(never)]
extern "C" fn direct_c_f0() -> u64 {
    black_box(0)
}

type CFn = extern "C" fn() -> u64;

fn bench(c: &mut Criterion) {
    let synth = support::synth(10);
    let mut system = System::new(Hosted::new().expect("hosted"), "nano_core");
    let ns = system.create_namespace("bench", None).unwrap();
    system
        .load(ns, CellSpec::named("bench_synth"), &synth.object)
        .unwrap();
    // SAFETY: the generated functions' signatures (support::synth).
    let h_rust: Handle<fn() -> u64> = unsafe { system.handle(ns, "bench_synth::f_0") }.unwrap();
    // SAFETY: `c_f_0` is `extern "C" fn() -> u64`, the type `CFn` (support::synth).
    let h_c: Handle<CFn> = unsafe { system.handle(ns, "c_f_0") }.unwrap();
    let lib = support::dlopen(&synth.cdylib, libc::RTLD_NOW | libc::RTLD_LOCAL);
    // SAFETY: `c_f_0` is `extern "C" fn() -> u64` (support::synth).
    let dl: extern "C" fn() -> u64 =
        unsafe { std::mem::transmute::<*mut _, _>(support::dlsym(lib, "c_f_0")) };
    assert_eq!((h_rust.get())() + (h_c.get())() + dl(), 0);

    let mut group = c.benchmark_group("call");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("direct fn (base image)", |b| {
        let f: fn() -> u64 = black_box(direct_f0);
        b.iter(|| black_box(f()))
    });
    group.bench_function("direct extern C fn (base image)", |b| {
        let f: extern "C" fn() -> u64 = black_box(direct_c_f0);
        b.iter(|| black_box(f()))
    });
    group.bench_function("handle fn (cell)", |b| {
        let h = black_box(&h_rust);
        b.iter(|| black_box((h.get())()))
    });
    group.bench_function("handle extern C fn (cell)", |b| {
        let h = black_box(&h_c);
        b.iter(|| black_box((h.get())()))
    });
    group.bench_function("dlsym extern C fn (dlopen'd cdylib)", |b| {
        let f = black_box(dl);
        b.iter(|| black_box(f()))
    });
    // What a host does that must follow a reload of the library: keep the `dlsym`'d pointer in
    // a table (a plugin's function table) and read it at each call, as a handle reads its slot.
    let table = std::sync::atomic::AtomicUsize::new(dl as usize);
    group.bench_function("dlsym extern C fn read from a table each call", |b| {
        let table = black_box(&table);
        b.iter(|| {
            let addr = table.load(std::sync::atomic::Ordering::Acquire);
            // SAFETY: the table holds `dl`, an `extern "C" fn() -> u64`.
            let f = unsafe { std::mem::transmute::<usize, extern "C" fn() -> u64>(addr) };
            black_box(f())
        })
    });
    group.finish();
    drop((h_rust, h_c));
}

criterion_group!(benches, bench);
criterion_main!(benches);
