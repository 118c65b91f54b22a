//! Health-tracked priority in network namespaces: a failing check lowers a node's priority
//! (or forces FAULT) and the VIP moves; when it recovers, preemption brings it back.
//!
//! - `script`: keepalived's `vrrp_script` semantics, with a script that fails while a flag
//!   file exists; also checks the `notify` hook (`notify INSTANCE STATE`).
//! - `listeners`: the node's own site listener stops answering. To make a real listener of a
//!   running Portico stop answering without touching its code, the node runs with
//!   `max_connections = 1` and the test holds that one connection open from inside the node
//!   (a `bash` `/dev/tcp` connection that sends nothing): the self-probe's connect is queued
//!   by the kernel but never gets an HTTP answer, exactly what a wedged proxy looks like.

use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

use crate::support::*;

fn executable(net: &Net, name: &str, body: &str) -> std::path::PathBuf {
    let p = net.write(name, &format!("#!/bin/sh\n{body}\n"));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{e}"));
    p
}

#[test]
fn failing_script_lowers_priority_and_weight_zero_forces_fault() {
    if !requirements(&["ip", "curl"]) {
        return;
    }
    let _serial = serial();
    let net = Net::standard();
    let (_e1, _e2) = net.echoes();
    let soft = net.path("soft-fail");
    let hard = net.path("hard-fail");
    let chk_soft = executable(&net, "chk-soft", &format!("test ! -e {}", soft.display()));
    let chk_hard = executable(&net, "chk-hard", &format!("test ! -e {}", hard.display()));
    let states = net.path("notify-n1.txt");
    let notify = executable(
        &net,
        "notify",
        &format!("echo \"$1 $2\" >> {}", states.display()),
    );
    let extra = format!(
        "notify = \"{}\"\ntrack = [\n  {{ script = \"{}\", interval = \"100ms\", weight = -60 }},\n  \
         {{ script = \"{}\", interval = \"100ms\", weight = 0 }},\n]\n",
        notify.display(),
        chk_soft.display(),
        chk_hard.display()
    );
    let c1 = net.node_config(
        "n1",
        &Vrrp {
            extra,
            ..Vrrp::v3(150, "100ms")
        },
        "",
    );
    let c2 = net.node_config("n2", &Vrrp::v3(100, "100ms"), "");
    let p1 = net.portico("n1", &c1);
    let _p2 = net.portico("n2", &c2);
    net.n1_elected();

    // Weight -60: 150 -> 90 < 100, n2 preempts after its master-down interval.
    let t = Instant::now();
    std::fs::write(&soft, "").unwrap_or_else(|e| panic!("{e}"));
    let moved = net.wait_vip("n2", PORT, t, secs(5.0));
    only_holder(&net, "n2", secs(2.0));
    // Recovery: back to 150, n1 preempts.
    let t = Instant::now();
    std::fs::remove_file(&soft).unwrap_or_else(|e| panic!("{e}"));
    let back = net.wait_vip("n1", PORT, t, secs(5.0));
    only_holder(&net, "n1", secs(2.0));

    // Weight 0: FAULT at once (priority-0 advert, VIP released).
    let t = Instant::now();
    std::fs::write(&hard, "").unwrap_or_else(|e| panic!("{e}"));
    let fault = net.wait_vip("n2", PORT, t, secs(5.0));
    only_holder(&net, "n2", secs(2.0));
    std::fs::remove_file(&hard).unwrap_or_else(|e| panic!("{e}"));
    net.wait_vip("n1", PORT, Instant::now(), secs(5.0));

    let seen = eventually(secs(3.0), "notify ran for every state", || {
        let text = std::fs::read_to_string(&states).unwrap_or_default();
        ["VI_1 BACKUP", "VI_1 MASTER", "VI_1 FAULT"]
            .iter()
            .all(|s| text.contains(s))
            .then_some(text)
    });
    let log = p1.log_text();
    assert!(
        log.contains("effective priority changed"),
        "priority changes are logged:\n{log}"
    );
    report(&format!(
        "ha_track script (v3, 100 ms): weight -60 -> VIP moved {moved:?}, recovered {back:?}; \
         weight 0 (FAULT) -> moved {fault:?}; notify saw: {}",
        seen.lines().collect::<Vec<_>>().join(", ")
    ));
}

#[test]
fn wedged_listener_moves_the_vip() {
    if !requirements(&["ip", "curl", "bash"]) {
        return;
    }
    let _serial = serial();
    let net = Net::standard();
    let site = |name: &str| {
        format!(
            "[[sites]]\nlisten = [\"0.0.0.0:{PORT}\"]\n\n[[sites.routes]]\npath = \"/\"\nrespond = \"{name}\"\n"
        )
    };
    let listeners = "track = [{ listeners = true, weight = -60 }]\n".to_string();
    let c1 = net.node_config(
        "n1",
        &Vrrp {
            extra: listeners,
            ..Vrrp::v3(150, "100ms")
        },
        &site("n1"),
    );
    // One connection at most, and a long header timeout so the held connection stays. A
    // short keep-alive: once the VIP has moved, the client's FIN/RST for a connection that
    // was queued on n1 goes to n2's MAC, so n1 would otherwise keep that idle keep-alive
    // connection (and the only slot) for the default 65 s.
    let text = std::fs::read_to_string(&c1).unwrap_or_default().replacen(
        "[server]\n",
        "[server]\nmax_connections = 1\nheader_timeout = \"60s\"\nkeepalive_timeout = \"1s\"\n",
        1,
    );
    std::fs::write(&c1, text).unwrap_or_else(|e| panic!("{e}"));
    let c2 = net.node_config("n2", &Vrrp::v3(100, "100ms"), &site("n2"));
    let _p1 = net.portico("n1", &c1);
    let _p2 = net.portico("n2", &c2);
    net.n1_elected();
    net.hold_vip("n1", PORT, secs(1.0));

    // Hold n1's only connection slot: its listener stops answering. (`exec sleep`: the
    // process killed below is the one holding the connection, not a parent of it.)
    let t = Instant::now();
    let mut hog = net.cmd("n1", "bash");
    hog.args([
        "-c",
        &format!("exec 3<>/dev/tcp/127.0.0.1/{PORT}; exec sleep 30"),
    ]);
    let mut hog = net.spawn(hog, "hog.log");
    let moved = net.wait_vip("n2", PORT, t, secs(5.0));
    only_holder(&net, "n2", secs(2.0));

    // Release it: the probe gets its answer again and n1 preempts.
    let t = Instant::now();
    hog.kill();
    let back = net.wait_vip("n1", PORT, t, secs(6.0));
    only_holder(&net, "n1", secs(2.0));
    report(&format!(
        "ha_track listeners (v3, 100 ms): wedged listener -> VIP moved {moved:?}; released -> back {back:?}"
    ));
}

#[test]
fn upstream_without_healthy_server_moves_the_vip() {
    if !requirements(&["ip", "curl"]) {
        return;
    }
    let _serial = serial();
    let net = Net::standard();
    let (_e1, _e2) = net.echoes();
    // n1's upstream "app" is one server in n1 with fast active TCP health checks.
    let app = "[upstreams.app]\nservers = [\"127.0.0.1:7000\"]\n\n[upstreams.app.health]\n\
               type = \"tcp\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1\n";
    let extra = "track = [{ upstream = \"app\", weight = -60 }]\n".to_string();
    let c1 = net.node_config(
        "n1",
        &Vrrp {
            extra,
            ..Vrrp::v3(150, "100ms")
        },
        app,
    );
    let c2 = net.node_config("n2", &Vrrp::v3(100, "100ms"), "");
    let start_app = || {
        let mut c = net.cmd("n1", portico_bin());
        c.args(["echo", "--listen", "127.0.0.1:7000", "--name", "app"]);
        let p = net.spawn(c, "app.log");
        eventually(secs(10.0), "app server", || {
            net.get_from("n1", "127.0.0.1", 7000).map(|_| ())
        });
        p
    };
    let mut app_server = start_app();
    let _p1 = net.portico("n1", &c1);
    let _p2 = net.portico("n2", &c2);
    net.n1_elected();

    // The only server of "app" dies: health checks mark it down, the track fails,
    // 150 - 60 = 90 < 100 and n2 preempts.
    let t = Instant::now();
    app_server.kill();
    let moved = net.wait_vip("n2", PORT, t, secs(6.0));
    only_holder(&net, "n2", secs(2.0));
    // It comes back: n1 preempts again.
    let t = Instant::now();
    let _app_server = start_app();
    let back = net.wait_vip("n1", PORT, t, secs(6.0));
    only_holder(&net, "n1", secs(2.0));
    report(&format!(
        "ha_track upstream (v3, 100 ms): app down -> VIP moved {moved:?}; app back -> returned {back:?}"
    ));
}
