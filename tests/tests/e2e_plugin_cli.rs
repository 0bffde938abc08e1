//! `weir plugin new | check | test` as a plugin author uses them: scaffold a
//! crate, test it natively, build the component, check it, run it on sample
//! input — no server involved.

use std::path::Path;
use std::process::{Command, Output};

use weir_e2e::{guest, tests_dir, weir_binary};

fn weir(args: &[&str]) -> Output {
    Command::new(weir_binary()).args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn cargo(dir: &Path, target_dir: &Path, args: &[&str]) -> Output {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn a_scaffolded_plugin_tests_builds_checks_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().to_str().unwrap();
    // A target dir that outlives the test, so repeated runs build incrementally.
    let exe = std::env::current_exe().unwrap();
    let target_dir = exe.ancestors().nth(3).unwrap().join("scaffold-test");
    // This checkout's SDK, named: the binary's built-in default is the tree
    // it was built from, which a build cache shared between clones may not
    // be.
    let sdk = tests_dir().join("../sdk").canonicalize().unwrap();
    let sdk = sdk.to_str().unwrap();

    for kind in ["filter", "enricher", "adapter"] {
        let name = format!("my-{kind}");
        let out = weir(&[
            "plugin",
            "new",
            &name,
            "--kind",
            kind,
            "--dir",
            parent,
            "--sdk-path",
            sdk,
        ]);
        assert!(out.status.success(), "{}", text(&out));
        let root = dir.path().join(&name);
        // Pin dependency versions to the workspace's, as a fresh crate would
        // resolve them anyway; keeps the test off the network on re-runs.
        std::fs::copy(tests_dir().join("../Cargo.lock"), root.join("Cargo.lock")).unwrap();

        let out = cargo(&root, &target_dir, &["test", "--quiet"]);
        assert!(out.status.success(), "{kind}: cargo test\n{}", text(&out));
        let out = cargo(
            &root,
            &target_dir,
            &["build", "--quiet", "--release", "--target", "wasm32-wasip2"],
        );
        assert!(out.status.success(), "{kind}: wasm build\n{}", text(&out));
        let wasm = target_dir.join(format!("wasm32-wasip2/release/my_{kind}.wasm"));
        let out = weir(&["plugin", "check", wasm.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            text(&out).contains(&format!("implements weir:plugin/{kind}-plugin@0.1.0")),
            "{}",
            text(&out)
        );
    }
    let out = weir(&[
        "plugin",
        "new",
        "my-filter",
        "--kind",
        "filter",
        "--dir",
        parent,
    ]);
    assert!(!out.status.success(), "refuses to overwrite");
    let out = weir(&["plugin", "new", "x", "--kind", "sorter", "--dir", parent]);
    assert!(!out.status.success());
    assert!(text(&out).contains("unknown plugin kind"), "{}", text(&out));

    // The scaffolded filter on JSON lines.
    let input = dir.path().join("events.jsonl");
    std::fs::write(
        &input,
        "{\"time\": 1, \"status\": \"healthy\", \"response_ms\": 20.5}\n{\"time\": 2, \"status\": \"healthy\", \"response_ms\": 900.0}\n{\"time\": 3, \"status\": \"unhealthy\"}\n",
    )
    .unwrap();
    let wasm = target_dir.join("wasm32-wasip2/release/my_filter.wasm");
    let out = weir(&[
        "plugin",
        "test",
        wasm.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--tag",
        "status",
        "--config",
        "slow-ms=100",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with('{')).count(),
        2,
        "{stdout}"
    );
    assert!(text(&out).contains("3 events in, 2 out"), "{}", text(&out));
}

#[test]
fn check_and_test_explain_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"not wasm").unwrap();
    let out = weir(&["plugin", "check", garbage.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not a WebAssembly component"),
        "{}",
        text(&out)
    );

    let socket = guest("evil-socket");
    let out = weir(&["plugin", "check", socket.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("wasi:sockets/tcp"), "{}", text(&out));

    // An adapter's errors are printed, with a failing exit.
    let body = dir.path().join("check.txt");
    std::fs::write(
        &body,
        "PING OK - 0.1 ms | rta=0.1ms;100;500;0 pl=0%;20;60;0",
    )
    .unwrap();
    let nagios = guest("nagios-adapter");
    let out = weir(&[
        "plugin",
        "test",
        nagios.to_str().unwrap(),
        "--input",
        body.to_str().unwrap(),
        "--config",
        "service=ping",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("\"rta_crit\":500.0"), "{}", text(&out));
    let out = weir(&[
        "plugin",
        "test",
        nagios.to_str().unwrap(),
        "--input",
        body.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("needs the `service` config key"),
        "{}",
        text(&out)
    );

    // A plugin whose init refuses its config.
    let owner = guest("owner-enricher");
    let out = weir(&[
        "plugin",
        "test",
        owner.to_str().unwrap(),
        "--input",
        body.to_str().unwrap(),
        "--config",
        "owner.a=team=x,channel=y,priority=medium",
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("must be high or low"), "{}", text(&out));
}
