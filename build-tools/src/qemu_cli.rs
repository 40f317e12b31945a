//! `cargo cell qemu`: its options, and the run: build the cells and the bare-metal kernel, boot it
//! under QEMU, show the serial console (and, with `--shell`, type into it).

use anyhow::{bail, Context, Result};

use crate::build::{build_cells, take_build_option, BuildOptions};

/// `cargo cell qemu`'s options.
#[derive(Debug)]
pub struct QemuOptions {
    /// Where to build.
    pub build: BuildOptions,
    /// `None`: 60 s, or an hour with `--shell`.
    pub timeout_secs: Option<u64>,
    /// Build the image, do not boot it.
    pub build_only: bool,
    /// CPUs QEMU gives the kernel.
    pub cpus: usize,
    /// The kernel command line.
    pub append: String,
    /// The kernel's shell on this terminal.
    pub shell: bool,
}

/// Parses `cargo cell qemu`'s arguments; `None` asks for the help.
pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<QemuOptions>> {
    let mut options = QemuOptions {
        build: BuildOptions::default(),
        timeout_secs: None,
        build_only: false,
        cpus: crate::qemu::DEFAULT_CPUS,
        append: String::new(),
        shell: false,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            a if take_build_option(a, &mut args, &mut options.build)? => {}
            "--build-only" => options.build_only = true,
            "--shell" => options.shell = true,
            "--append" => {
                options.append = args.next().context("--append needs kernel words")?;
            }
            "--smp" => {
                let n = args.next().context("--smp needs a number of CPUs")?;
                options.cpus = n
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=16).contains(n))
                    .with_context(|| format!("--smp takes 1 to 16 CPUs, not `{n}`"))?;
            }
            "--timeout" => {
                let secs = args.next().context("--timeout needs a number of seconds")?;
                options.timeout_secs = Some(
                    secs.parse::<u64>()
                        .ok()
                        .filter(|s| (1..=3600).contains(s))
                        .with_context(|| {
                            format!("--timeout takes 1 to 3600 seconds, not `{secs}`")
                        })?,
                );
            }
            "-h" | "--help" => return Ok(None),
            other => bail!("unknown option `{other}` for `cargo cell qemu`"),
        }
    }
    Ok(Some(options))
}

/// Runs `cargo cell qemu`.
pub fn run(options: &QemuOptions) -> Result<()> {
    let report = build_cells(&options.build)?;
    if !options.build.quiet {
        println!("{}", report.summary());
    }
    let image = crate::qemu::build_image(&report, options.build.quiet)?;
    if !options.build.quiet {
        println!(
            "bare-metal kernel: {} (build id {})\nboot module: {} ({} members; {} symbols kept in the image for the cells)",
            image.kernel.display(),
            crate_metadata::hex::encode(&image.build_id),
            image.module.display(),
            image.members.len(),
            image.kept_symbols
        );
    }
    if !options.build_only {
        let default_secs = if options.shell { 3600 } else { 60 };
        let timeout = std::time::Duration::from_secs(options.timeout_secs.unwrap_or(default_secs));
        if !options.build.quiet {
            println!(
                "booting under qemu-system-x86_64 on {} CPUs (serial console below)\n",
                options.cpus
            );
        }
        let mut cmdline = options.append.clone();
        if options.shell {
            cmdline = format!("shell {cmdline}").trim().to_string();
        }
        let boot = crate::qemu::BootOptions {
            cmdline,
            cpus: options.cpus,
            timeout,
            echo: true,
        };
        // With the shell, every line typed here goes to the kernel's serial port.
        let mut forwarding = false;
        let mut forward = |_line: &str, input: &crate::qemu::Input| {
            if std::mem::replace(&mut forwarding, true) {
                return;
            }
            let input = input.clone();
            std::thread::spawn(move || {
                for line in std::io::stdin().lines() {
                    let Ok(line) = line else { break };
                    if input.send(format!("{line}\r").into_bytes()).is_err() {
                        break;
                    }
                }
            });
        };
        let on_line: Option<crate::qemu::OnLine<'_>> = options.shell.then_some(&mut forward);
        let run = crate::qemu::boot_with(&image, &boot, on_line)?;
        if !run.succeeded() {
            bail!("{}", crate::qemu::describe_failure(&run, timeout));
        }
        if !options.build.quiet {
            println!(
                "\nQEMU powered off with the kernel's success code after {:.1} s",
                run.elapsed.as_secs_f64()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn args(s: &str) -> std::vec::IntoIter<String> {
        s.split_whitespace()
            .skip(1)
            .map(str::to_string)
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn qemu_takes_timeout_build_only_smp_append_shell_and_the_build_options() {
        let Some(o) = parse(args("qemu --timeout 30 --build-only --target-dir /t -q")).unwrap()
        else {
            panic!("not qemu")
        };
        assert_eq!(o.timeout_secs, Some(30));
        assert!(o.build_only && o.build.quiet);
        assert_eq!(o.build.target_dir.as_deref(), Some(Path::new("/t")));
        let Some(o) = parse(args("qemu")).unwrap() else {
            panic!("not qemu")
        };
        assert_eq!(
            (o.timeout_secs, o.build_only, o.shell),
            (None, false, false)
        );
        assert_eq!((o.cpus, o.append.as_str()), (4, ""));
        let Some(o) = parse(args("qemu --smp 2 --append uart-test --shell")).unwrap() else {
            panic!("not qemu")
        };
        assert_eq!((o.cpus, o.append.as_str(), o.shell), (2, "uart-test", true));
        for bad in [
            "qemu --timeout 0",
            "qemu --timeout soon",
            "qemu --timeout",
            "qemu --fast",
            "qemu --smp 0",
            "qemu --smp 17",
            "qemu --append",
        ] {
            assert!(parse(args(bad)).is_err(), "{bad}");
        }
    }
}
