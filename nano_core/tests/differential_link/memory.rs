//! Reading this process's memory safely, following jump stubs, and naming addresses with
//! `dladdr`.

use std::ffi::{c_void, CStr};

/// Reads `len` bytes of this process's memory at `addr` through `/proc/self/mem`, so that an
/// address in no mapping is an error rather than a crash.
pub(crate) fn try_read(addr: u64, len: usize) -> Option<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    thread_local! {
        static MEM: std::fs::File = std::fs::File::open("/proc/self/mem").expect("/proc/self/mem");
    }
    let mut buf = vec![0; len];
    MEM.with(|mem| mem.read_exact_at(&mut buf, addr).ok())?;
    Some(buf)
}

/// Reads `N` bytes at `addr`, which lies in a loaded image.
pub(crate) fn read<const N: usize>(addr: u64) -> [u8; N] {
    try_read(addr, N)
        .and_then(|b| b.try_into().ok())
        .unwrap_or_else(|| panic!("{addr:#x} is not mapped"))
}

pub(crate) fn read_u64(addr: u64) -> u64 {
    u64::from_le_bytes(read::<8>(addr))
}

pub(crate) fn read_i32(addr: u64) -> i64 {
    i64::from(i32::from_le_bytes(read::<4>(addr)))
}

/// The function a jump stub at `addr` leads to (a PLT entry or one of our call stubs: `jmp
/// *disp32(%rip)`, after an `endbr64` and a `bnd` prefix in IBT entries), or `addr` itself.
pub(crate) fn canonical(mut addr: u64) -> u64 {
    for _ in 0..3 {
        let Some(code) = try_read(addr, 16) else {
            return addr;
        };
        let Some(at) = [0usize, 1, 4, 5]
            .into_iter()
            .find(|i| code[*i] == 0xff && code[*i + 1] == 0x25)
        else {
            return addr;
        };
        let disp = i64::from(i32::from_le_bytes(code[at + 2..at + 6].try_into().unwrap()));
        let slot = (addr as i64 + at as i64 + 6 + disp) as u64;
        match try_read(slot, 8) {
            Some(word) => addr = u64::from_le_bytes(word.try_into().unwrap()),
            None => return addr,
        }
    }
    addr
}

/// `dladdr`: the symbol nearest below `addr` in any image `ld.so` knows, and its address.
pub(crate) fn dladdr(addr: u64) -> Option<(String, u64)> {
    // SAFETY: an all-zero `Dl_info` is valid (null pointers); `dladdr` only fills it in and reads
    // no memory at `addr`.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a local `Dl_info`, which is what `dladdr` writes.
    if unsafe { libc::dladdr(addr as usize as *const c_void, &mut info) } == 0
        || info.dli_sname.is_null()
    {
        return None;
    }
    // SAFETY: `dli_sname` is not null (checked), so it is a NUL-terminated name in the string
    // table of a loaded object, which stays loaded.
    let name = unsafe { CStr::from_ptr(info.dli_sname) };
    Some((name.to_string_lossy().into_owned(), info.dli_saddr as u64))
}
