//! Which keys and values a given systemd version understands. systemd ignores what it does not
//! know with a warning and `verify` still exits 0 (docs/units.md, "The analyzer"), so an
//! unknown key is a silent misconfiguration — e.g. `Type=notify-reload` on 252 quietly becomes
//! `Type=simple`.
use std::collections::BTreeSet;
use std::sync::OnceLock;

const KEYS_252: &str = include_str!("keys-252.txt");
const KEYS_257: &str = include_str!("keys-257.txt");

/// Keys newer than 252 with the version that added them (docs/units.md, "What older systemd
/// does not understand"; systemd NEWS); used for targets between the two lists and beyond 257.
const KEY_SINCE: &[(&str, u32)] = &[
    ("ReloadSignal", 253),
    ("OpenFile", 253),
    ("FileDescriptorStorePreserve", 254),
    ("RestartMode", 254),
    ("RestartSteps", 254),
    ("RestartMaxDelaySec", 254),
    ("MemoryKSM", 254),
    ("NFTSet", 255),
    ("SetLoginEnvironment", 255),
    ("PollLimitIntervalSec", 255),
    ("PollLimitBurst", 255),
    ("MemoryZSwapWriteback", 256),
    ("PassFileDescriptorsToExec", 256),
    ("PrivatePIDs", 257),
    ("BindLogSockets", 257),
    ("PrivateBPF", 258),
    ("DelegateNamespaces", 258),
    ("PassPIDFD", 258),
    ("AcceptFileDescriptors", 258),
    ("DeferTrigger", 258),
    ("ExecReloadPost", 259),
    ("RefreshOnReload", 260),
    ("BindNetworkInterface", 260),
    ("MemoryTHP", 260),
    ("RestartRandomizedDelaySec", 262),
];

/// Values newer than the key itself: (key, value, since).
const VALUE_SINCE: &[(&str, &str, u32)] = &[
    ("Type", "notify-reload", 253),
    ("PrivateTmp", "disconnected", 257),
    ("ProtectControlGroups", "private", 257),
    ("ProtectControlGroups", "strict", 257),
    ("PrivateUsers", "self", 257),
    ("PrivateUsers", "identity", 257),
    ("PrivateUsers", "full", 258),
    ("PrivateUsers", "managed", 260),
    ("ProtectHostname", "private", 258),
];

fn set(text: &'static str) -> BTreeSet<&'static str> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect()
}

fn keys_252() -> &'static BTreeSet<&'static str> {
    static S: OnceLock<BTreeSet<&'static str>> = OnceLock::new();
    S.get_or_init(|| set(KEYS_252))
}

fn keys_257() -> &'static BTreeSet<&'static str> {
    static S: OnceLock<BTreeSet<&'static str>> = OnceLock::new();
    S.get_or_init(|| set(KEYS_257))
}

pub fn key_since(key: &str) -> Option<u32> {
    KEY_SINCE.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

#[derive(Debug, PartialEq, Eq)]
pub enum KeyStatus {
    Known,
    /// Known, but only from this version on.
    Newer(u32),
    Unknown,
}

pub fn key_status(section: &str, key: &str, target: u32) -> KeyStatus {
    let full = format!("{section}.{key}");
    let in_252 = keys_252().contains(full.as_str());
    let in_257 = keys_257().contains(full.as_str());
    let since = key_since(key);
    if in_252 {
        return KeyStatus::Known;
    }
    match since {
        Some(v) if (in_257 || v > 257) && v <= target => KeyStatus::Known,
        Some(v) if in_257 || v > 257 => KeyStatus::Newer(v),
        // In 257 but not in 252, version not tabulated: accept from 253 on, lenient in between.
        _ if in_257 && target > 252 => KeyStatus::Known,
        _ if in_257 => KeyStatus::Newer(253),
        _ => KeyStatus::Unknown,
    }
}

/// `Some(version)` when `value` of `key` needs a newer systemd than `target`.
pub fn value_needs(key: &str, value: &str, target: u32) -> Option<u32> {
    VALUE_SINCE
        .iter()
        .find(|(k, v, _)| *k == key && *v == value)
        .map(|(_, _, s)| *s)
        .filter(|s| *s > target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_new_since_252_with_a_version_is_in_the_257_list() {
        for (k, v) in KEY_SINCE.iter().filter(|(_, v)| *v <= 257) {
            let found = ["Service", "Socket"]
                .iter()
                .any(|s| keys_257().contains(format!("{s}.{k}").as_str()));
            assert!(found, "{k} (since {v}) missing from keys-257.txt");
            assert!(
                !keys_252().contains(format!("Service.{k}").as_str()),
                "{k} is in the 252 list"
            );
        }
    }

    #[test]
    fn statuses() {
        assert_eq!(key_status("Service", "ExecStart", 252), KeyStatus::Known);
        assert_eq!(
            key_status("Service", "ReloadSignal", 252),
            KeyStatus::Newer(253)
        );
        assert_eq!(key_status("Service", "ReloadSignal", 257), KeyStatus::Known);
        assert_eq!(
            key_status("Service", "ExecReloadPre", 262),
            KeyStatus::Unknown
        );
        assert_eq!(
            key_status("Service", "ExecReloadPost", 257),
            KeyStatus::Newer(259)
        );
        assert_eq!(
            key_status("Unit", "StartLimitIntervalSec", 257),
            KeyStatus::Known
        );
        assert_eq!(
            key_status("Socket", "FileDescriptorName", 239),
            KeyStatus::Known
        );
        // Keys with digits are in the tables too (keys.sh).
        assert_eq!(key_status("Socket", "BindIPv6Only", 252), KeyStatus::Known);
        assert_eq!(value_needs("Type", "notify-reload", 252), Some(253));
        assert_eq!(value_needs("Type", "notify-reload", 253), None);
    }
}
