//! The VRRP part of a binary upgrade: which instances the new process takes over from the
//! old one, and as what, so that a master stays master without a VIP flap.
//!
//! On the handover socket ([`crate::handover`], [`crate::upgrade`]), when the old process
//! offered it ([`OFFER_ENV`] in the new process's environment; an older binary does not, and
//! the new process then starts its instances afresh), right before the new process starts
//! VRRP:
//!
//! - new -> old: `VRRP {"instances":[{"name","interface","vrid","version","vips"}]}` — the
//!   new config's instances ([`Key`]);
//! - old -> new: `VRRP {"handed":[{"name","state","master_adver_interval_ms"}]}` — the old
//!   process paused each instance whose key is the same in both configs (no more adverts,
//!   addresses left in place) and reports what it ran as. The new process starts those as
//!   that role (`portico_vrrp::Inherited`), the others afresh.
//!
//! An instance whose name, interface, VRID, version or addresses changed is not handed over:
//! the old process resigns it at exit as on a stop, the new one starts it from INIT.

use std::collections::HashMap;
use std::time::Duration;

use portico_config::{VrrpInstance, VrrpVersion};
use portico_vrrp::{Inherited, State};
use serde_json::{Value, json};

/// Set (to `1`) by an old process that can hand its VRRP instances over.
pub const OFFER_ENV: &str = "PORTICO_UPGRADE_VRRP";

/// What must be equal for an instance to be handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    pub version: u8,
    /// `ADDR/LEN`, sorted.
    pub vips: Vec<String>,
}

impl Key {
    pub fn of(i: &VrrpInstance) -> Key {
        let mut vips: Vec<String> = i.virtual_ips.iter().map(|p| p.to_string()).collect();
        vips.sort();
        Key {
            name: i.name.clone(),
            interface: i.interface.clone(),
            vrid: i.vrid,
            version: match i.version {
                VrrpVersion::V2 => 2,
                VrrpVersion::V3 => 3,
            },
            vips,
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "interface": self.interface,
            "vrid": self.vrid,
            "version": self.version,
            "vips": self.vips,
        })
    }

    fn from_json(v: &Value) -> Option<Key> {
        Some(Key {
            name: v.get("name")?.as_str()?.to_string(),
            interface: v.get("interface")?.as_str()?.to_string(),
            vrid: u8::try_from(v.get("vrid")?.as_u64()?).ok()?,
            version: u8::try_from(v.get("version")?.as_u64()?).ok()?,
            vips: v
                .get("vips")?
                .as_array()?
                .iter()
                .map(|a| a.as_str().map(str::to_string))
                .collect::<Option<_>>()?,
        })
    }
}

/// The new process's request line: its instances.
pub fn request(instances: &[VrrpInstance]) -> String {
    let list: Vec<Value> = instances.iter().map(|i| Key::of(i).to_json()).collect();
    format!("VRRP {}\n", json!({ "instances": list }))
}

/// The old process's reading of a request line.
pub fn parse_request(line: &str) -> Result<Vec<Key>, String> {
    let v = body(line)?;
    v.get("instances")
        .and_then(Value::as_array)
        .ok_or("no instance list")?
        .iter()
        .map(|k| Key::from_json(k).ok_or_else(|| format!("bad instance {k}")))
        .collect()
}

/// The old process's answer: the instances it paused, with their roles.
pub fn reply(handed: &[(String, Inherited)]) -> String {
    let list: Vec<Value> = handed
        .iter()
        .map(|(name, i)| {
            json!({
                "name": name,
                "state": i.state.as_str(),
                "master_adver_interval_ms": u64::try_from(i.master_adver_interval.as_millis()).unwrap_or(u64::MAX),
            })
        })
        .collect();
    format!("VRRP {}\n", json!({ "handed": list }))
}

/// The new process's reading of the answer: instance name -> role to start as.
pub fn parse_reply(line: &str) -> Result<HashMap<String, Inherited>, String> {
    let v = body(line)?;
    let list = v
        .get("handed")
        .and_then(Value::as_array)
        .ok_or("no handed list")?;
    let mut out = HashMap::new();
    for h in list {
        let bad = || format!("bad handed instance {h}");
        let name = h.get("name").and_then(Value::as_str).ok_or_else(bad)?;
        let state = match h.get("state").and_then(Value::as_str) {
            Some("MASTER") => State::Master,
            Some("BACKUP") => State::Backup,
            Some("FAULT") => State::Fault,
            Some("INIT") => State::Initialize,
            _ => return Err(bad()),
        };
        let ms = h
            .get("master_adver_interval_ms")
            .and_then(Value::as_u64)
            .ok_or_else(bad)?;
        out.insert(
            name.to_string(),
            Inherited {
                state,
                master_adver_interval: Duration::from_millis(ms),
            },
        );
    }
    Ok(out)
}

fn body(line: &str) -> Result<Value, String> {
    let text = line
        .trim_end()
        .strip_prefix("VRRP ")
        .ok_or("not a VRRP line")?;
    serde_json::from_str(text).map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn instances(text: &str) -> Vec<VrrpInstance> {
        let dir = std::env::temp_dir();
        portico_config::parse(text, &dir.join("p.toml"))
            .unwrap()
            .vrrp
    }

    const TWO: &str = "[admin]\nlisten = \"off\"\n\
        [[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 51\npriority = 150\n\
        virtual_ips = [\"10.200.0.100/24\", \"10.200.0.101/24\"]\n\
        [[vrrp]]\nname = \"VI 2 \\\"x\\\"\"\ninterface = \"eth1\"\nvrid = 52\nversion = 2\n\
        virtual_ips = [\"10.200.1.100\"]\n";

    #[test]
    fn request_and_reply_round_trip() {
        let list = instances(TWO);
        let keys = parse_request(&request(&list)).unwrap();
        assert_eq!(keys, list.iter().map(Key::of).collect::<Vec<_>>());
        assert_eq!(keys[1].name, "VI 2 \"x\"");
        assert_eq!(keys[1].version, 2);
        assert_eq!(keys[0].vips, ["10.200.0.100/24", "10.200.0.101/24"]);
        let handed = vec![
            (
                "VI_1".to_string(),
                Inherited {
                    state: State::Master,
                    master_adver_interval: Duration::from_millis(100),
                },
            ),
            (
                keys[1].name.clone(),
                Inherited {
                    state: State::Backup,
                    master_adver_interval: Duration::from_millis(1000),
                },
            ),
        ];
        let back = parse_reply(&reply(&handed)).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back["VI_1"], handed[0].1);
        assert_eq!(back[&keys[1].name], handed[1].1);
        assert!(reply(&handed).ends_with('\n') && !reply(&handed).trim_end().contains('\n'));
    }

    #[test]
    fn a_changed_instance_has_another_key() {
        let a = &instances(TWO)[0];
        let changed = instances(&TWO.replace("10.200.0.101/24", "10.200.0.102/24"));
        assert_ne!(Key::of(a), Key::of(&changed[0]));
        // Priority is not part of the key: the new process adopts with its new priority.
        let prio = instances(&TWO.replace("priority = 150", "priority = 120"));
        assert_eq!(Key::of(a), Key::of(&prio[0]));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(parse_request("READY 12\n").is_err());
        assert!(parse_request("VRRP {\"instances\":[{\"name\":1}]}\n").is_err());
        assert!(parse_reply("VRRP {\"handed\":[{\"name\":\"a\",\"state\":\"BOSS\",\"master_adver_interval_ms\":1}]}").is_err());
        assert!(parse_reply("VRRP not json").is_err());
    }
}
