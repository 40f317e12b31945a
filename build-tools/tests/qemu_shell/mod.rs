//! The shell boot of qemu.rs: a session typed at the serial console as a person would.

use build_tools::qemu;

use crate::qemu_support::{image, require_qemu, TIMEOUT};

/// One command of a shell session, and whether it must succeed.
struct Command {
    line: &'static str,
    ok: bool,
}

const fn ok(line: &'static str) -> Command {
    Command { line, ok: true }
}

const fn refused(line: &'static str) -> Command {
    Command { line, ok: false }
}

#[test]
fn the_shell_answers_a_person_at_the_serial_console() {
    require_qemu();
    // Each command is typed once the previous answer ended (`ok` or `error: ...`).
    let session = [
        ok("help"),
        ok("cpus"),
        ok("ls"),
        ok("ns"),
        ok("deps frame_alloc"),
        ok("tasks"),
        ok("swap memfs"),
        ok("swap frame_alloc"),
        ok("swap sched"),
        ok("swap frame_alloc"),
        ok("load libs/greet.o"),
        ok("deps greet"),
        ok("unload greet"),
        ok("load libs/columns.o"),
        refused("unload memfs"),
        refused("load libs/nothing.o"),
        refused("frobnicate"),
        ok("reclaim"),
        ok("stats"),
        // Stops the workers, checks the state exactly and powers off.
        ok("poweroff"),
    ];
    let mut next = 0;
    let mut answers: Vec<(&str, String)> = Vec::new();
    let mut current = String::new();
    let mut on_line = |line: &str, input: &qemu::Input| {
        let ready = line.starts_with("shell: ready");
        let ended = line == "ok" || line.starts_with("error: ");
        if next > 0 && !ready {
            current.push_str(line);
            current.push('\n');
        }
        if ended && next > 0 {
            answers.push((session[next - 1].line, std::mem::take(&mut current)));
        }
        if (ready || ended) && next < session.len() {
            // Typed as a person would: the characters, then Enter.
            let command = session[next].line;
            next += 1;
            input.send(format!("{command}\r").into_bytes()).unwrap();
        }
    };
    let options = qemu::BootOptions::new("shell", TIMEOUT);
    let run = qemu::boot_with(image(), &options, Some(&mut on_line)).expect("starting QEMU");
    let out = &run.output;
    assert!(
        run.succeeded(),
        "{}:\n{out}",
        qemu::describe_failure(&run, TIMEOUT)
    );
    // `poweroff` answers with the kernel's verdict, and the machine is off: no `ok` follows.
    if next == session.len() && answers.len() + 1 == session.len() {
        answers.push((session[next - 1].line, current));
    }
    assert_eq!(answers.len(), session.len(), "{out}");
    for (command, (asked, answer)) in session.iter().zip(&answers) {
        assert_eq!(command.line, *asked);
        // The console echoes what was typed after the prompt.
        assert!(
            answer.starts_with(&format!("cells> {}\n", command.line)),
            "{}: {answer}",
            command.line
        );
        if command.line == "poweroff" {
            assert!(
                answer.ends_with("all checks passed, powering off\n"),
                "{answer}"
            );
            continue;
        }
        assert_eq!(
            answer.ends_with("ok\n"),
            command.ok,
            "`{}` should {}:\n{answer}",
            command.line,
            if command.ok { "succeed" } else { "fail" }
        );
    }
    let answer = |command: &str| -> &str {
        &answers
            .iter()
            .find(|(c, _)| *c == command)
            .unwrap_or_else(|| panic!("no answer to {command}"))
            .1
    };
    let cpus = answer("cpus");
    assert_eq!(
        cpus.lines().filter(|l| l.starts_with("cpu")).count(),
        4,
        "{cpus}"
    );
    let ls = answer("ls");
    for cell in [
        "frame_alloc",
        "memfs",
        "sched",
        "uart",
        "counter",
        "kvstore",
        "log",
    ] {
        assert!(
            ls.lines()
                .any(|l| l.starts_with(&format!("{cell} ")) && l.contains(" live ")),
            "{cell}: {ls}"
        );
    }
    assert!(
        answer("ns").contains("namespace `_kernel` (parent: none)"),
        "{}",
        answer("ns")
    );
    let deps = answer("deps frame_alloc");
    assert!(
        deps.contains("`frame_alloc` 0.1.0 from kernel/: uses "),
        "{deps}"
    );
    assert!(
        deps.contains("is used by ") && deps.contains("memfs (") && deps.contains("sched ("),
        "{deps}"
    );
    assert!(
        deps.contains(
            "a swap of `frame_alloc` that moves state parks at its gate the calls from: memfs, nano_core_bare, sched"
        ),
        "{deps}"
    );
    let tasks = answer("tasks");
    assert!(tasks.contains("worker0"), "{tasks}");
    assert!(tasks.contains("the policy, sched v1"), "{tasks}");
    assert!(
        answer("swap memfs").contains("without a gate"),
        "{}",
        answer("swap memfs")
    );
    let swaps: Vec<&String> = answers
        .iter()
        .filter(|(c, _)| *c == "swap frame_alloc")
        .map(|(_, a)| a)
        .collect();
    assert!(
        swaps[0].contains("behind the gate (calls from memfs, nano_core_bare, sched)"),
        "{}",
        swaps[0]
    );
    assert!(
        swaps[0].contains("static frame_alloc::ALLOCATOR: Transferred"),
        "{}",
        swaps[0]
    );
    // Back from the buddy allocator to v1 (the retired v1, reused): v1 takes v2's state over.
    assert!(
        swaps[1].contains("for kernel/frame_alloc.o behind the gate")
            && swaps[1].contains("static frame_alloc::ALLOCATOR: Transferred"),
        "{}",
        swaps[1]
    );
    assert!(
        answer("swap sched").contains("static sched::SCHED: Transferred"),
        "{}",
        answer("swap sched")
    );
    assert!(
        answer("load libs/greet.o").contains("loaded `greet` 0.1.0 into `_kernel`"),
        "{}",
        answer("load libs/greet.o")
    );
    assert!(
        answer("unload greet").contains("unloaded `greet`"),
        "{}",
        answer("unload greet")
    );
    let columns = answer("load libs/columns.o");
    assert!(
        columns.contains("loaded dependency cell `unicode_width` 0.1."),
        "{columns}"
    );
    assert!(columns.contains("(for `columns`)"), "{columns}");
    assert!(
        answer("unload memfs").contains("error: cell `memfs` is still used by: "),
        "{}",
        answer("unload memfs")
    );
    assert!(
        answer("load libs/nothing.o")
            .contains("error: the boot module has no object `libs/nothing.o`"),
        "{}",
        answer("load libs/nothing.o")
    );
    assert!(
        answer("frobnicate").contains("error: unknown command"),
        "{}",
        answer("frobnicate")
    );
    let reclaim = answer("reclaim");
    assert!(
        reclaim.contains("reclaim: freed the retired `frame_alloc`"),
        "{reclaim}"
    );
    assert!(
        reclaim.contains("reclaim: freed the retired `sched`"),
        "{reclaim}"
    );
    let stats = answer("stats");
    assert!(stats.contains(" into cells, 0 failed"), "{stats}");
    assert!(stats.contains("swaps: 4 (3 behind the gate"), "{stats}");
    assert!(stats.contains("drains: "), "{stats}");
    let poweroff = answer("poweroff");
    assert!(
        poweroff.contains("none held twice, none lost"),
        "{poweroff}"
    );
    assert!(out.contains("all checks passed, powering off"), "{out}");
}
