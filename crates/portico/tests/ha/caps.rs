//! Without CAP_NET_ADMIN or CAP_NET_RAW, `portico run` with a `[[vrrp]]` instance exits 2
//! with a one-line reason naming the missing capability (never a panic). The capabilities
//! are taken away with util-linux `setpriv --bounding-set`, inside a test namespace.

use std::time::Duration;

use crate::support::*;

fn run_without(net: &Net, caps: &str) -> (Option<i32>, String) {
    let config = net.node_config("n1", &Vrrp::v3(100, "100ms"), "");
    let mut c = std::process::Command::new("setpriv");
    c.arg(format!("--bounding-set={caps}"))
        .args(["ip", "netns", "exec", &net.ns("n1")])
        .arg(portico_bin())
        .arg("run")
        .arg("-c")
        .arg(&config);
    let mut p = net.spawn(c, &format!("caps{caps}.log"));
    let status = p.stop_after_exit(Duration::from_secs(20));
    (status.and_then(|s| s.code()), p.log_text())
}

#[test]
fn missing_capabilities_are_a_clear_error() {
    if !requirements(&["ip", "setpriv"]) {
        return;
    }
    let _serial = serial();
    let net = Net::new(&[("n1", "10.200.0.11")]);
    let (code, out) = run_without(&net, "-net_admin");
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("CAP_NET_ADMIN") && !out.contains("panicked"),
        "{out}"
    );
    let (code, out) = run_without(&net, "-net_raw");
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("CAP_NET_RAW") && !out.contains("panicked"),
        "{out}"
    );
    assert!(!net.has_addr("n1", VIP));
}
