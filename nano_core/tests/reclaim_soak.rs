//! Soak: thousands of swaps of distinct objects in a running `nano_core --serve --load 2` leave
//! its mappings and its memory where they were, because retired versions are reclaimed as the
//! system runs; `status` counts them.
//!
//! Each swap loads a new object (counter's object with a different trailing word: a valid ELF
//! with another SHA-256, so no retired version is ever reused) while two load threads keep
//! calling `counter::bump`. Without reclaiming, every swap would leave one more mapping behind.

mod common;

use std::time::Instant;

use common::server::{counter, Server, TempDir, STEP};
use crate_metadata::CellKind;

/// Swaps after which the process is measured, and swaps measured.
const WARM_UP: u64 = 200;
const SWAPS: u64 = 2000;

/// `/proc/PID/maps` lines and resident memory in bytes.
fn footprint(pid: u32) -> (usize, u64) {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line");
    (maps.lines().count(), rss_kib * 1024)
}

/// Asks for `reclaim` until no retired version is left mapped.
fn reclaim_all(server: &mut Server) {
    let deadline = Instant::now() + STEP;
    loop {
        let reply = server.ok("reclaim");
        if reply
            .iter()
            .any(|l| l.contains("; 0 retired versions still mapped"))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "retired versions stay mapped:\n{}",
            reply.join("\n")
        );
    }
}

#[test]
fn thousands_of_swaps_keep_mappings_and_memory_bounded() {
    let mut server = Server::start(common::cells_dir(), &["--load", "2"]);
    let pid = server.child.id();
    let objects = TempDir::new("soak");
    let base = common::object(CellKind::Libs, "counter");
    let swap = |server: &mut Server, i: u64| {
        let mut bytes = base.clone();
        bytes.extend_from_slice(&i.to_le_bytes());
        let path = objects.0.join(format!("counter-{i}.o"));
        std::fs::write(&path, &bytes).expect("write the object");
        let reply = server.ok(&format!("swap counter {}", path.display()));
        assert!(
            reply
                .iter()
                .any(|l| l.starts_with("swapped counter") && l.ends_with("(loaded)")),
            "{reply:?}"
        );
        std::fs::remove_file(&path).expect("remove the object");
    };
    for i in 0..WARM_UP {
        swap(&mut server, i);
    }
    reclaim_all(&mut server);
    let before = footprint(pid);
    let start = Instant::now();
    for i in WARM_UP..WARM_UP + SWAPS {
        swap(&mut server, i);
    }
    let took = start.elapsed();
    // The server reclaims on its own after swaps: wait for it, without asking.
    let deadline = Instant::now() + STEP;
    let mut status = server.ok("status");
    while !status
        .iter()
        .any(|l| l.ends_with("; 0 retired versions still mapped"))
    {
        assert!(
            Instant::now() < deadline,
            "the server does not reclaim on its own:\n{}",
            status.join("\n")
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        status = server.ok("status");
    }
    let after = footprint(pid);
    eprintln!(
        "{SWAPS} swaps in {:.1} s; /proc/PID/maps {} -> {} lines, RSS {:.1} -> {:.1} MiB",
        took.as_secs_f64(),
        before.0,
        after.0,
        before.1 as f64 / (1 << 20) as f64,
        after.1 as f64 / (1 << 20) as f64,
    );
    // Every version retired was freed: the count `status` reports covers them all.
    let line = status
        .iter()
        .find(|l| l.starts_with("reclaimed "))
        .unwrap_or_else(|| panic!("no reclaimed line:\n{}", status.join("\n")));
    let freed: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a count");
    assert!(freed >= WARM_UP + SWAPS, "{line}");
    // Mappings and memory are back where they were (a few lines and MiB of slack: thread stacks
    // of the client threads and the allocator's caches come and go). Without reclaiming, each
    // swap keeps four more mappings and about 16 KiB.
    assert!(
        after.0 <= before.0 + 16,
        "/proc/PID/maps grew from {} to {} lines",
        before.0,
        after.0
    );
    assert!(
        after.1 <= before.1 + (8 << 20),
        "RSS grew from {} to {} bytes",
        before.1,
        after.1
    );
    // And the load saw every call answered right across all of it.
    assert!(counter(&status, "calls") > 0, "{status:?}");
    assert_eq!(counter(&status, "failed"), 0, "{}", status.join("\n"));

    // A version whose statics a newer one runs on, without the plain-state promise, stays: memfs's
    // files are trait objects whose vtables are in the old version's pages.
    let upgrade = common::cells_dir().join("upgrades/memfs.o");
    server.ok(&format!("swap memfs {}", upgrade.display()));
    let reply = server.ok("reclaim");
    assert!(
        reply
            .iter()
            .any(|l| l.starts_with("kept memfs") && l.contains("memfs::FS")),
        "{}",
        reply.join("\n")
    );
    assert!(
        reply
            .iter()
            .any(|l| l.contains("; 1 retired versions still mapped;")),
        "{}",
        reply.join("\n")
    );
    assert!(server.quit().success());
}
