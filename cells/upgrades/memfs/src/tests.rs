use super::*;
use std::sync::Mutex;

/// The tests share `FS` and the frame allocator: run them one at a time.
static GLOBAL: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    GLOBAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// This version keeps `FS` by being bound to v1's memory, so its type is exactly v1's: v1's unit
/// test pins the same numbers.
#[test]
fn state_layout_is_v1s() {
    assert_eq!(core::mem::size_of_val(&FS), 32);
    assert_eq!(core::mem::align_of_val(&FS), 8);
    assert!(revision().starts_with("memfs v2:"));
}

#[test]
fn paths_are_checked() {
    assert!(components("etc/motd").is_err());
    assert!(components("/a/../b").is_err());
    assert_eq!(components("//a//b/").unwrap(), vec!["a", "b"]);
    assert!(components("/").unwrap().is_empty());
}

#[test]
fn create_read_write_remove_accounts_frames() {
    let _g = lock();
    let free = frame_alloc::free_count();
    let big = vec![7u8; 4096 * 2 + 1];
    create("/t1/dir/big", &big).unwrap();
    assert_eq!(frame_alloc::free_count(), free - 3);
    assert_eq!(read("/t1/dir/big").unwrap(), big);
    assert!(create("/t1/dir/big", b"again")
        .unwrap_err()
        .contains("exists"));
    assert_eq!(
        frame_alloc::free_count(),
        free - 3,
        "failed create frees its frames"
    );

    write("/t1/dir/big", b"small").unwrap();
    assert_eq!(read("/t1/dir/big").unwrap(), b"small");
    assert_eq!(frame_alloc::free_count(), free - 1);
    assert!(write("/t1/dir/none", b"x").is_err());
    assert!(write("/t1/dir", b"x").is_err());
    assert_eq!(
        frame_alloc::free_count(),
        free - 1,
        "failed writes free their frames"
    );

    create("/t1/empty", b"").unwrap();
    assert_eq!(
        frame_alloc::free_count(),
        free - 1,
        "empty files hold no frame"
    );
    assert_eq!(list("/t1").unwrap(), vec!["dir/", "empty"]);
    assert!(remove("/t1/dir").unwrap_err().contains("not empty"));
    remove("/t1/dir/big").unwrap();
    assert_eq!(frame_alloc::free_count(), free);
    assert!(read("/t1/dir/big").unwrap_err().contains("no such file"));
    assert!(remove("/t1/dir/big").is_err());
    remove("/t1/dir").unwrap();
    remove("/t1/empty").unwrap();
    remove("/t1").unwrap();
    assert!(remove("/").is_err());
    assert!(list("/t1").is_err());
}

#[test]
fn files_are_not_directories() {
    let _g = lock();
    create("/t2/file", b"data").unwrap();
    assert!(create("/t2/file/child", b"x").is_err());
    assert!(mkdir("/t2/file/sub").is_err());
    assert!(list("/t2/file").is_err());
    mkdir("/t2/a/b").unwrap();
    assert_eq!(list("/t2").unwrap(), vec!["a/", "file"]);
    assert_eq!(
        read("/t2").unwrap(),
        b"a/\nfile 4\n",
        "v2 lists a directory"
    );
    remove("/t2/a/b").unwrap();
    remove("/t2/a").unwrap();
    remove("/t2/file").unwrap();
    remove("/t2").unwrap();
}

#[test]
fn init_creates_motd_and_devices() {
    let _g = lock();
    init().unwrap();
    init().unwrap();
    assert_eq!(read("/etc/motd").unwrap(), MOTD.as_bytes());
    let root = list("/").unwrap();
    for name in ["dev/", "etc/", "tmp/"] {
        assert!(root.contains(&String::from(name)), "{root:?}");
    }
    let frames = String::from_utf8(read("/dev/frames").unwrap()).unwrap();
    assert!(
        frames.contains(&format!("total {}", frame_alloc::TOTAL_FRAMES)),
        "{frames}"
    );
    assert!(write("/dev/frames", b"x")
        .unwrap_err()
        .contains("not a writable"));
    create("/tmp/klogged", b"x").unwrap();
    let log = String::from_utf8(read("/dev/klog").unwrap()).unwrap();
    assert!(log.contains("create /tmp/klogged"), "{log}");
    remove("/tmp/klogged").unwrap();
    assert!(file_count() >= 3);
    assert_eq!(frames_used(), 1, "only the motd holds a frame");
}

#[test]
fn read_or_panic_names_the_path() {
    let _g = lock();
    let err = std::panic::catch_unwind(|| read_or_panic("/no/such/file")).unwrap_err();
    let msg = err.downcast_ref::<String>().unwrap();
    assert!(msg.contains("/no/such/file"), "{msg}");
}

#[test]
fn stat_describes_files_directories_and_specials() {
    let _g = lock();
    init().unwrap();
    create("/t3/big", &vec![1u8; 4097]).unwrap();
    create("/t3/one", b"x").unwrap();
    create("/t3/empty", b"").unwrap();
    mkdir("/t3/sub").unwrap();
    assert_eq!(
        stat("/t3/big").unwrap(),
        "/t3/big: file, 4097 bytes, 2 frames"
    );
    assert_eq!(stat("/t3/one").unwrap(), "/t3/one: file, 1 byte, 1 frame");
    assert_eq!(
        stat("/t3/empty").unwrap(),
        "/t3/empty: file, 0 bytes, 0 frames"
    );
    assert_eq!(
        stat("/t3").unwrap(),
        "/t3: directory, 4 entries, 3 files below, 3 frames"
    );
    assert_eq!(
        stat("/t3/sub").unwrap(),
        "/t3/sub: directory, 0 entries, 0 files below, 0 frames"
    );
    let frames = stat("/dev/frames").unwrap();
    assert!(
        frames.starts_with("/dev/frames: special file, ") && frames.ends_with(", 0 frames"),
        "{frames}"
    );
    assert!(stat("/t3/none").unwrap_err().contains("no such file"));
    assert!(stat("relative").is_err());
    assert_eq!(
        String::from_utf8(read("/t3").unwrap()).unwrap(),
        "big 4097\nempty 0\none 1\nsub/\n"
    );
    let root = String::from_utf8(read("/").unwrap()).unwrap();
    assert!(root.contains("dev/\n") && root.contains("t3/\n"), "{root}");
    for path in ["/t3/big", "/t3/one", "/t3/empty", "/t3/sub", "/t3"] {
        remove(path).unwrap();
    }
}
