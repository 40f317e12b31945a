//! `cargo cell qemu`: the bare-metal `nano_core` (`bare_metal/`), built and booted under QEMU.
//!
//! 1. [`build_cells`](crate::build_cells) as for the hosted system; the kernel cells and their
//!    new versions are loaded on bare metal as the very same object files.
//! 2. The dependency cells those objects need, transitively (the manifest's
//!    [`dependency_closure`](crate_metadata::Manifest::dependency_closure) of each: `log`, `spin`,
//!    `heapless`, ...), under their manifest paths (`deps/<crate>-<version>.o`). The kernel loads
//!    them by the same rule as the hosted `nano_core`; since its own crates are built with
//!    `panic = "abort"` and so carry other symbol hashes, it normally loads every one that exports
//!    anything. Dependency cells only library and application cells use stay out of the module.
//! 3. The *keep list*: every symbol the cells need from the image (`core`, `alloc`, the
//!    allocator shim, `memcpy`, ...), written as `EXTERN(...)` to `<target>/bare/keep.ld`, which
//!    the kernel's build script hands to the linker so that `--gc-sections` keeps those symbols.
//!    A hosted image exports them with `--export-dynamic`; a static kernel has no dynamic symbol
//!    table, so the build names them instead.
//! 4. The kernel, `cargo build --release` in `bare_metal/` (its own workspace: `panic = "abort"`,
//!    static relocation model, `link.ld`).
//! 5. The boot module: one `ar` archive with the kernel's own ELF file (its symbol table, which
//!    QEMU does not load, and its GNU build id, which the kernel compares with its own before it
//!    links a cell against those symbols), the objects under their manifest paths, and
//!    `manifest.json`: the cell build's manifest cut down to the entries of those objects.
//! 6. `qemu-system-x86_64 -kernel <kernel> -initrd <module>` (PVH boot), the serial console on
//!    stdout, and the kernel's verdict from the `isa-debug-exit` device.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use crate_metadata::{CellKind, Manifest, ManifestEntry};
use goblin::elf::note::NT_GNU_BUILD_ID;
use goblin::elf::{sym, Elf};

use crate::build::BuildReport;
use crate::workspace::cargo_binary;

/// The directory of the bare-metal kernel's crate, relative to the workspace root.
pub const BARE_DIR: &str = "bare_metal";
/// The exit status QEMU gives when the kernel writes its success code (0x10) to `isa-debug-exit`.
pub const QEMU_SUCCESS: i32 = 0x10 << 1 | 1;
/// The exit status for the kernel's failure code (0x11).
pub const QEMU_FAILURE: i32 = 0x11 << 1 | 1;

/// What [`build_image`] made.
#[derive(Clone, Debug)]
pub struct BareImage {
    /// The kernel executable.
    pub kernel: PathBuf,
    /// The boot module (an `ar` archive).
    pub module: PathBuf,
    /// The members of the boot module: name and size.
    pub members: Vec<(String, usize)>,
    /// The symbols the kernel keeps for the cells.
    pub kept_symbols: usize,
    /// The kernel's GNU build id, packed with its symbol table.
    pub build_id: Vec<u8>,
}

/// Builds the kernel and its boot module from a finished cell build.
pub fn build_image(report: &BuildReport, quiet: bool) -> Result<BareImage> {
    let bare_dir = report.workspace_root.join(BARE_DIR);
    if !bare_dir.join("Cargo.toml").is_file() {
        bail!(
            "{} has no bare-metal kernel crate ({BARE_DIR}/Cargo.toml)",
            report.workspace_root.display()
        );
    }
    let out = report.target_dir.join("bare");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;

    // The kernel cells, their new versions and their dependency cells, under their manifest paths,
    // and a manifest of just those: every entry the kernel reads has its object in the module.
    let entries = module_objects(report)?;
    let mut members: Vec<(String, Vec<u8>)> = entries
        .iter()
        .map(|entry| {
            let path = report.cells_dir.join(&entry.object);
            std::fs::read(&path)
                .with_context(|| format!("cannot read {} (cell `{}`)", path.display(), entry.name))
                .map(|bytes| (entry.object.clone(), bytes))
        })
        .collect::<Result<_>>()?;
    let manifest = Manifest {
        rustc: report.manifest.rustc.clone(),
        serial: report.manifest.serial,
        cells: entries.into_iter().cloned().collect(),
    };
    let manifest =
        serde_json::to_vec(&manifest).context("cannot write the boot module's manifest")?;

    let keep = keep_list(members.iter().map(|(n, b)| (n.as_str(), b.as_slice())))?;
    let keep_path = out.join("keep.ld");
    let mut script = String::from(
        "/* Written by `cargo cell qemu`: the symbols the cells need from the kernel image. */\n",
    );
    for name in &keep {
        script.push_str(&format!("EXTERN(\"{name}\")\n"));
    }
    crate::files::write_if_changed(&keep_path, script.as_bytes())?;

    let kernel = build_kernel(&bare_dir, &out, &keep_path, quiet)?;
    let kernel_bytes =
        std::fs::read(&kernel).with_context(|| format!("cannot read {}", kernel.display()))?;
    // The kernel refuses a symbol table whose build id is not its own; one without any would
    // be refused at boot, so it is refused here already.
    let build_id = build_id(&kernel_bytes)
        .with_context(|| format!("the bare-metal kernel {}", kernel.display()))?
        .to_vec();
    members.insert(0, ("manifest.json".into(), manifest));
    members.insert(0, ("nano_core_bare".into(), kernel_bytes));

    let module = out.join("cells.a");
    let archive = write_archive(&members)?;
    crate::files::write_if_changed(&module, &archive)?;
    Ok(BareImage {
        kernel,
        module,
        members: members.iter().map(|(n, b)| (n.clone(), b.len())).collect(),
        kept_symbols: keep.len(),
        build_id,
    })
}

/// The GNU build id of the ELF file `bytes`: the descriptor of its `.note.gnu.build-id` note
/// (`bare_metal/build.rs` links the kernel with `--build-id=sha1`).
pub fn build_id(bytes: &[u8]) -> Result<&[u8]> {
    let range = build_id_range(bytes)?;
    Ok(&bytes[range])
}

/// Where in the ELF file `bytes` its build id is: the byte range of the note's descriptor.
fn build_id_range(bytes: &[u8]) -> Result<std::ops::Range<usize>> {
    let elf = Elf::parse(bytes).context("not an ELF file")?;
    let desc = elf
        .iter_note_sections(bytes, Some(".note.gnu.build-id"))
        .into_iter()
        .flatten()
        .filter_map(|note| note.ok())
        .find(|note| note.n_type == NT_GNU_BUILD_ID && note.name == "GNU" && !note.desc.is_empty())
        .map(|note| note.desc)
        .context("it has no GNU build id note (.note.gnu.build-id): link it with --build-id")?;
    // The descriptor is a slice of `bytes`: its offset is the distance between the two starts.
    let start = desc.as_ptr() as usize - bytes.as_ptr() as usize;
    Ok(start..start + desc.len())
}

/// A copy of the ELF file `bytes` whose build id note says `id` (of the same length) instead:
/// the kernel file of another build, as far as the build id check can tell, with the very same
/// symbols. For tests of the kernel's refusal.
pub fn with_build_id(bytes: &[u8], id: &[u8]) -> Result<Vec<u8>> {
    let range = build_id_range(bytes)?;
    if range.len() != id.len() {
        bail!(
            "the build id has {} bytes, the replacement {}",
            range.len(),
            id.len()
        );
    }
    let mut copy = bytes.to_vec();
    copy[range].copy_from_slice(id);
    Ok(copy)
}

/// The manifest entries whose objects go into the boot module, in manifest order: the kernel
/// cells, the library cells that need nothing of `std` (the kernel has no standard library: it
/// loads them with the shell's `load`, and its tasks use `counter`), the new versions of those
/// (`cells/upgrades` entries with one of their names), and every dependency cell any of those
/// needs, directly or not. Dependency cells that only `std` library cells or applications use
/// are left out, which keeps the module small.
pub fn module_objects(report: &BuildReport) -> Result<Vec<&ManifestEntry>> {
    let manifest = &report.manifest;
    let mut chosen: BTreeSet<&str> = manifest
        .cells
        .iter()
        .filter(|e| e.kind == CellKind::Kernel)
        .map(|e| e.name.as_str())
        .collect();
    for lib in manifest.cells.iter().filter(|e| e.kind == CellKind::Libs) {
        let closure = manifest
            .dependency_closure(lib)
            .map_err(|e| anyhow::anyhow!("the dependency cells of libs `{}`: {e}", lib.name))?;
        let mut needs_std = false;
        for entry in closure.iter().copied().chain([lib]) {
            let path = report.cells_dir.join(&entry.object);
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            needs_std |=
                uses_std(&bytes).with_context(|| format!("cannot parse {}", path.display()))?;
        }
        if !needs_std {
            chosen.insert(lib.name.as_str());
        }
    }
    let roots: Vec<&ManifestEntry> = manifest
        .cells
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                CellKind::Kernel | CellKind::Libs | CellKind::Upgrades
            ) && chosen.contains(e.name.as_str())
        })
        .collect();
    let mut wanted: BTreeSet<&str> = roots.iter().map(|e| e.object.as_str()).collect();
    for root in &roots {
        let closure = manifest.dependency_closure(root).map_err(|e| {
            anyhow::anyhow!(
                "the dependency cells of {} `{}`: {e}",
                root.kind.dir(),
                root.name
            )
        })?;
        wanted.extend(closure.iter().map(|e| e.object.as_str()));
    }
    Ok(manifest
        .cells
        .iter()
        .filter(|e| wanted.contains(e.object.as_str()))
        .collect())
}

/// Whether an object imports a symbol of the standard library (`std::...`), which the
/// bare-metal kernel does not have.
pub fn uses_std(bytes: &[u8]) -> Result<bool> {
    let elf = Elf::parse(bytes)?;
    Ok(elf.syms.iter().any(|s| {
        s.st_shndx == 0
            && s.st_bind() != sym::STB_LOCAL
            && elf
                .strtab
                .get_at(s.st_name)
                .and_then(crate_metadata::demangle::crate_of)
                .is_some_and(|c| c == "std")
    }))
}

/// Every global symbol the objects use but none of them defines, sorted.
pub fn keep_list<'a>(objects: impl Iterator<Item = (&'a str, &'a [u8])>) -> Result<Vec<String>> {
    let mut used = BTreeSet::new();
    let mut defined = BTreeSet::new();
    for (name, bytes) in objects {
        let elf = Elf::parse(bytes).with_context(|| format!("cannot parse {name}"))?;
        for s in elf.syms.iter() {
            let Some(sym_name) = elf.strtab.get_at(s.st_name).filter(|n| !n.is_empty()) else {
                continue;
            };
            if s.st_bind() == sym::STB_LOCAL {
                continue;
            }
            if s.st_shndx == 0 {
                used.insert(sym_name.to_string());
            } else {
                defined.insert(sym_name.to_string());
            }
        }
    }
    Ok(used.difference(&defined).cloned().collect())
}

/// `cargo build --release` of the kernel; returns the executable.
fn build_kernel(bare_dir: &Path, out: &Path, keep: &Path, quiet: bool) -> Result<PathBuf> {
    let mut cmd = Command::new(cargo_binary());
    // The crate's .cargo/config.toml (target, relocation model) applies in its directory; the
    // target directory is given explicitly so that it follows the cell build's.
    cmd.current_dir(bare_dir)
        .args(["build", "--release", "--target-dir"])
        .arg(out)
        .env("NANO_BARE_KEEP", keep)
        // Flags from the environment would replace the crate's own (`relocation-model=static`).
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .stdin(Stdio::null());
    if quiet {
        cmd.arg("--quiet");
    }
    let output = cmd
        .stderr(if quiet {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .output()
        .context("cannot run `cargo build` for the bare-metal kernel")?;
    if !output.status.success() {
        bail!(
            "building the bare-metal kernel failed ({}){}",
            output.status,
            if quiet {
                format!(":\n{}", String::from_utf8_lossy(&output.stderr))
            } else {
                String::new()
            }
        );
    }
    let kernel = out
        .join("x86_64-unknown-linux-gnu")
        .join("release")
        .join("nano_core_bare");
    if !kernel.is_file() {
        bail!(
            "the kernel build reported success but {} is missing",
            kernel.display()
        );
    }
    Ok(kernel)
}

/// An `ar` archive (BSD names, so that member names may be long and contain `/`).
pub fn write_archive(members: &[(String, Vec<u8>)]) -> Result<Vec<u8>> {
    let mut builder = ar::Builder::new(Vec::new());
    for (name, bytes) in members {
        let header = ar::Header::new(name.as_bytes().to_vec(), bytes.len() as u64);
        builder
            .append(&header, bytes.as_slice())
            .with_context(|| format!("cannot add {name} to the boot module"))?;
    }
    builder
        .into_inner()
        .context("cannot finish the boot module")
}

/// How QEMU ran.
#[derive(Clone, Debug)]
pub struct QemuRun {
    /// Everything the kernel printed on its serial console.
    pub output: String,
    /// QEMU's exit status (`None` when it was killed at the timeout).
    pub status: Option<i32>,
    /// How long the boot took, start to power-off.
    pub elapsed: Duration,
}

impl QemuRun {
    /// Whether the kernel reported success.
    pub fn succeeded(&self) -> bool {
        self.status == Some(QEMU_SUCCESS)
    }
}

/// The QEMU executable on `PATH`, or an error that says how to get it.
pub fn qemu_binary() -> Result<PathBuf> {
    let name = "qemu-system-x86_64";
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "{name} is not installed (on Debian: `apt-get install qemu-system-x86`); the \
                 bare-metal kernel needs it to boot"
            )
        })
}

/// The CPUs QEMU gives the kernel unless told otherwise.
pub const DEFAULT_CPUS: usize = 4;

/// How to boot.
#[derive(Clone, Debug)]
pub struct BootOptions {
    /// The kernel command line (`shell`, `uart-test`; empty for the default run).
    pub cmdline: String,
    /// CPUs (`-smp`).
    pub cpus: usize,
    /// How long to wait for the kernel to power off.
    pub timeout: Duration,
    /// Copy the serial console to stdout as it arrives.
    pub echo: bool,
}

impl BootOptions {
    /// [`DEFAULT_CPUS`] CPUs, the given command line and timeout, no echo.
    pub fn new(cmdline: &str, timeout: Duration) -> BootOptions {
        BootOptions {
            cmdline: cmdline.into(),
            cpus: DEFAULT_CPUS,
            timeout,
            echo: false,
        }
    }
}

/// Where a conversation with the kernel writes: bytes for its serial port, sent in order by a
/// thread of their own (so that a large write never holds up reading the console).
pub type Input = mpsc::Sender<Vec<u8>>;

/// What [`boot_with`] calls with every console line, with the serial port's [`Input`].
pub type OnLine<'a> = &'a mut dyn FnMut(&str, &Input);

/// Boots `image` under QEMU (software emulation, [`DEFAULT_CPUS`] CPUs) with the kernel command
/// line `cmdline` and waits up to `timeout` for the kernel to power off. With `echo`, the serial
/// console is copied to stdout as it arrives.
pub fn boot(image: &BareImage, cmdline: &str, timeout: Duration, echo: bool) -> Result<QemuRun> {
    let options = BootOptions {
        echo,
        ..BootOptions::new(cmdline, timeout)
    };
    boot_with(image, &options, None)
}

/// Boots `image` with `options`. With `on_line`, the serial port's input is a pipe: `on_line` is
/// called with every line the kernel prints and may send bytes to its serial port (a person
/// typing at the console, or a stream of data); without, the input is empty.
pub fn boot_with(
    image: &BareImage,
    options: &BootOptions,
    mut on_line: Option<OnLine<'_>>,
) -> Result<QemuRun> {
    let qemu = qemu_binary()?;
    let start = Instant::now();
    let mut child = Command::new(&qemu)
        .args(["-machine", "pc", "-cpu", "max", "-m", "256M"])
        .args(["-smp", &options.cpus.to_string()])
        .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
        .args([
            "-no-reboot",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ])
        .arg("-kernel")
        .arg(&image.kernel)
        .arg("-initrd")
        .arg(&image.module)
        .args(["-append", &options.cmdline])
        .stdin(if on_line.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", qemu.display()))?;
    let (input, to_write) = mpsc::channel::<Vec<u8>>();
    let writer = child.stdin.take().map(|mut stdin| {
        std::thread::spawn(move || {
            ignore_sigpipe_on_this_thread();
            for bytes in to_write {
                if stdin
                    .write_all(&bytes)
                    .and_then(|()| stdin.flush())
                    .is_err()
                {
                    break;
                }
            }
        })
    });
    let stdout = child.stdout.take().context("QEMU has no stdout pipe")?;
    let (lines, received) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut output = String::new();
    let mut status = None;
    let echo = options.echo;
    let mut take = |line: &str, output: &mut String| {
        let line = line.trim_end_matches('\r');
        if echo {
            println!("{line}");
            let _ = std::io::stdout().flush();
        }
        output.push_str(line);
        output.push('\n');
        if let Some(f) = on_line.as_mut() {
            f(line, &input);
        }
    };
    loop {
        while let Ok(line) = received.try_recv() {
            take(&line, &mut output);
        }
        if let Some(exit) = child.try_wait().context("cannot wait for QEMU")? {
            status = exit.code();
            break;
        }
        if start.elapsed() > options.timeout {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = reader.join();
    for line in received.try_iter() {
        take(&line, &mut output);
    }
    drop(input);
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut stderr);
    }
    if !stderr.trim().is_empty() {
        output.push_str("[qemu stderr] ");
        output.push_str(stderr.trim());
        output.push('\n');
        if echo {
            eprintln!("qemu: {}", stderr.trim());
        }
    }
    Ok(QemuRun {
        output,
        status,
        elapsed: start.elapsed(),
    })
}

/// Why a boot did not succeed, in words.
pub fn describe_failure(run: &QemuRun, timeout: Duration) -> String {
    match run.status {
        None => format!(
            "the kernel did not power off within {} s",
            timeout.as_secs()
        ),
        Some(QEMU_FAILURE) => "the kernel reported a failure (see its output above)".into(),
        Some(0) => "QEMU exited with status 0: the kernel reset the machine (a triple fault?) \
                    instead of powering off"
            .into(),
        Some(code) => format!("QEMU exited with status {code}"),
    }
}

/// Blocks `SIGPIPE` for the calling thread: a write to QEMU's standard input after QEMU exited
/// then fails with `EPIPE` instead of ending the process (`cargo-cell` restores the signal's
/// default action, so that printing into a closed pipe ends it quietly).
fn ignore_sigpipe_on_this_thread() {
    // SAFETY: the set is initialised by sigemptyset before it is read; pthread_sigmask changes
    // only this thread's mask and accepts a null old-set pointer.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}
