//! The user's kcli configuration, read as kcli reads it: `~/.kcli/config.yml` (its `default:`
//! VM values and its clients) and `~/.kcli/profiles.yml` (profiles that plans use without
//! declaring them).
//!
//! A CI run wants a plan to mean the same on every machine, so reading them can be turned off:
//! `--no-kcli-config`, or `SITEPLAN_NO_KCLI_CONFIG=1`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::yaml::{self, Node, Value};

/// The environment variable that turns reading the kcli configuration off.
pub const OFF_VARIABLE: &str = "SITEPLAN_NO_KCLI_CONFIG";

/// Whether the kcli configuration is read at all: not when the command says
/// `--no-kcli-config` (`off_by_flag`), nor when the environment turns it off.
pub fn enabled(off_by_flag: bool) -> bool {
    let off_in_environment =
        std::env::var(OFF_VARIABLE).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    !off_by_flag && !off_in_environment
}

/// kcli's directory: `~/.kcli`.
pub fn directory() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| Path::new(&home).join(".kcli"))
}

/// What was found in the kcli configuration. Empty when it is off or absent.
#[derive(Debug, Clone, Default)]
pub struct KcliConfig {
    /// The files read, for `plan validate -v`.
    pub read: Vec<PathBuf>,
    /// `default:` in config.yml: values for every VM that does not set them.
    pub defaults: Option<Node>,
    /// The other sections of config.yml: clients (hosts) by name, each a map.
    pub clients: BTreeMap<String, Node>,
    /// profiles.yml, by name.
    pub profiles: BTreeMap<String, Node>,
    /// Files that exist but could not be read, with why.
    pub broken: Vec<String>,
    /// It was turned off (`enabled`): nothing was read.
    pub off: bool,
}

impl KcliConfig {
    /// The configuration, unless it is turned off (`enabled`): read once per process (loading
    /// the plan and choosing each provider ask for it).
    pub fn load(off_by_flag: bool) -> KcliConfig {
        static READ: std::sync::OnceLock<KcliConfig> = std::sync::OnceLock::new();
        if !enabled(off_by_flag) {
            return KcliConfig {
                off: true,
                ..KcliConfig::default()
            };
        }
        READ.get_or_init(|| match directory() {
            Some(dir) => KcliConfig::read_from(&dir),
            None => KcliConfig::default(),
        })
        .clone()
    }

    /// Reads `config.yml` and `profiles.yml` in `dir`, where they exist.
    pub fn read_from(dir: &Path) -> KcliConfig {
        let mut config = KcliConfig::default();
        if let Some(root) = config.read_map(&dir.join("config.yml")) {
            for (key, value) in root.as_map().unwrap_or(&[]) {
                let Some(name) = key.key_text() else { continue };
                if !matches!(value.value, Value::Map(_)) {
                    continue;
                }
                if name == "default" {
                    config.defaults = Some(value.clone());
                } else {
                    config.clients.insert(name, value.clone());
                }
            }
        }
        if let Some(root) = config.read_map(&dir.join("profiles.yml")) {
            for (key, value) in root.as_map().unwrap_or(&[]) {
                if let (Some(name), Value::Map(_)) = (key.key_text(), &value.value) {
                    config.profiles.insert(name, value.clone());
                }
            }
        }
        config
    }

    fn read_map(&mut self, path: &Path) -> Option<Node> {
        let text = std::fs::read_to_string(path).ok()?;
        match yaml::parse(&text) {
            Ok((root, _)) if matches!(root.value, Value::Map(_) | Value::Null) => {
                self.read.push(path.to_path_buf());
                Some(root)
            }
            Ok(_) => {
                self.broken
                    .push(format!("{} is not a map of names", path.display()));
                None
            }
            Err(yaml::YamlProblem::Syntax { message, .. }) => {
                self.broken
                    .push(format!("{}: invalid YAML: {message}", path.display()));
                None
            }
            Err(_) => {
                self.broken
                    .push(format!("{}: the document is too large", path.display()));
                None
            }
        }
    }

    /// The client VMs go to when they name none: `default: client:` in config.yml.
    pub fn default_client(&self) -> Option<String> {
        self.defaults
            .as_ref()?
            .get("client")?
            .key_text()
            .filter(|c| !c.is_empty())
    }

    /// The VM defaults for `client` (the default client when `None`): `default:`, then the
    /// client's own section over it, each as a map node. Highest precedence first.
    pub fn vm_defaults(&self, client: Option<&str>) -> Vec<&Node> {
        let client = client.map(str::to_string).or_else(|| self.default_client());
        let mut layers = Vec::new();
        if let Some(section) = client.as_deref().and_then(|c| self.clients.get(c)) {
            layers.push(section);
        }
        if let Some(defaults) = &self.defaults {
            layers.push(defaults);
        }
        layers
    }

    /// The `config_*` template variables kcli gives plans, scripts and files: every value of
    /// `default:` and of the client's section, prefixed, and kcli's own values for the client's
    /// type, host, user and name when the configuration does not say.
    pub fn template_variables(&self) -> BTreeMap<String, serde_json::Value> {
        let client = self.default_client().unwrap_or_else(|| "local".into());
        let mut vars = BTreeMap::new();
        for layer in self.vm_defaults(Some(&client)).into_iter().rev() {
            for (key, value) in layer.as_map().unwrap_or(&[]) {
                if let Some(name) = key.key_text() {
                    vars.insert(format!("config_{name}"), value.to_json());
                }
            }
        }
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        for (name, value) in [
            ("config_type", "kvm".to_string()),
            ("config_host", "127.0.0.1".to_string()),
            ("config_user", user),
        ] {
            vars.entry(name.to_string()).or_insert(value.into());
        }
        vars.insert("config_client".into(), client.into());
        // Under them, kcli's own defaults, which its templates see whatever the configuration
        // says (`{{ config_pool }}` is `default` on a machine without one).
        for (name, value) in KCLI_DEFAULTS {
            if let Ok(value) = serde_json::from_str(value) {
                vars.entry(format!("config_{name}")).or_insert(value);
            }
        }
        vars
    }
}

/// kcli's defaults for the VM keys siteplan reads, as kcli sets them (JSON).
const KCLI_DEFAULTS: &[(&str, &str)] = &[
    ("pool", r#""default""#),
    ("nets", r#"["default"]"#),
    ("image", "null"),
    ("numcpus", "2"),
    ("memory", "512"),
    ("cpumodel", r#""host-model""#),
    ("cpuhotplug", "false"),
    ("memoryhotplug", "false"),
    ("disksize", "10"),
    ("disks", r#"[{"size": 10, "default": true}]"#),
    ("diskinterface", r#""virtio""#),
    ("diskthin", "true"),
    ("cloudinit", "true"),
    ("guestagent", "true"),
    ("start", "true"),
    ("autostart", "false"),
    ("reserveip", "false"),
    ("reservedns", "false"),
    ("reservehost", "false"),
    ("keys", "[]"),
    ("cmds", "[]"),
    ("scripts", "[]"),
    ("files", "[]"),
    ("dns", "null"),
    ("domain", "null"),
    ("gateway", "null"),
    ("cmdline", "null"),
    ("virttype", "null"),
    ("wait", "false"),
    ("waittimeout", "0"),
];

/// The connection a kcli client of type `kvm` describes, as a libvirt URI, the way kcli builds
/// it: the local system daemon for 127.0.0.1 or localhost, else SSH (or TCP/TLS) to the host.
/// `Err` names what siteplan cannot use.
pub fn libvirt_uri(client: &Node) -> Result<String, String> {
    let text = |key: &str| client.get(key).and_then(Node::key_text);
    let kind = text("type").unwrap_or_else(|| "kvm".into());
    if kind != "kvm" {
        return Err(format!("a kcli client of type `{kind}`"));
    }
    let host = text("host").unwrap_or_else(|| "127.0.0.1".into());
    let session = client.get("session").map(|n| n.value == Value::Bool(true)) == Some(true);
    let path = if session { "session" } else { "system" };
    if host == "127.0.0.1" || host == "localhost" {
        return Ok(format!("qemu:///{path}"));
    }
    let protocol = text("protocol").unwrap_or_else(|| "ssh".into());
    let user = text("user").unwrap_or_else(|| "root".into());
    let port = text("port").map(|p| format!(":{p}")).unwrap_or_default();
    match protocol.as_str() {
        "ssh" => Ok(format!("qemu+ssh://{user}@{host}{port}/{path}")),
        "tcp" | "tls" => Ok(format!("qemu+{protocol}://{host}{port}/{path}")),
        other => Err(format!("a kcli client with protocol `{other}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> KcliConfig {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.yml"), text).unwrap();
        KcliConfig::read_from(dir.path())
    }

    #[test]
    fn reads_defaults_and_clients_and_names_the_default_client() {
        let c = config(
            "default:\n  client: lab\n  numcpus: 4\nlab:\n  type: kvm\n  host: 10.0.0.5\n  pool: fast\n",
        );
        assert_eq!(c.default_client().as_deref(), Some("lab"));
        let layers = c.vm_defaults(None);
        assert_eq!(layers.len(), 2);
        assert!(
            layers[0].get("pool").is_some(),
            "the client's section comes first"
        );
        let vars = c.template_variables();
        assert_eq!(vars["config_host"], "10.0.0.5");
        assert_eq!(vars["config_numcpus"], 4);
        assert_eq!(vars["config_client"], "lab");
        assert_eq!(
            vars["config_pool"], "fast",
            "the configuration over kcli's default"
        );
        assert_eq!(
            vars["config_memory"], 512,
            "kcli's default where it says nothing"
        );
        let none = KcliConfig::default().template_variables();
        assert_eq!(none["config_pool"], "default");
        assert_eq!(none["config_nets"], serde_json::json!(["default"]));
        assert_eq!(
            libvirt_uri(&c.clients["lab"]).unwrap(),
            "qemu+ssh://root@10.0.0.5/system"
        );
    }

    #[test]
    fn without_a_file_the_variables_are_kclis_own() {
        let c = KcliConfig::default();
        let vars = c.template_variables();
        assert_eq!(vars["config_type"], "kvm");
        assert_eq!(vars["config_host"], "127.0.0.1");
        assert_eq!(vars["config_client"], "local");
    }

    #[test]
    fn a_broken_file_is_reported_not_used() {
        let c = config("default: [unclosed\n");
        assert!(c.defaults.is_none());
        assert_eq!(c.broken.len(), 1);
    }

    #[test]
    fn only_kvm_clients_are_libvirt() {
        let c = config("k:\n  type: kubevirt\nl:\n  host: localhost\n");
        assert!(libvirt_uri(&c.clients["k"]).is_err());
        assert_eq!(libvirt_uri(&c.clients["l"]).unwrap(), "qemu:///system");
    }
}
