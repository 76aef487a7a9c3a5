//! Environment overrides: `SWITCHBOARD_<SECTION>__<KEY>=value`.
//!
//! An override is any variable that starts with [`ENV_PREFIX`] and contains
//! [`ENV_SEPARATOR`]; the parts between separators, lowercased, are the key
//! path (`SWITCHBOARD_SERVER__TLS__CERT_PATH` sets `server.tls.cert_path`).
//! Variables with the prefix but no separator (`SWITCHBOARD_CONFIG`, say) are
//! left to the process and never read as config.
//!
//! The value is read as a TOML value (`10`, `true`, `1.5`, `["a", "b"]`,
//! `{ cert_path = "c" }`) and, when it is not one, as a plain string. Keys
//! whose default is a string always take the raw text, so an API key of
//! `12345` stays a string. Overrides land on the parsed tree before it is
//! deserialised, so an unknown key or a wrong type is reported exactly as it
//! would be for the file, naming the variable.
//!
//! Variables are read through [`EnvSource`] so tests never mutate the process
//! environment.

use std::collections::BTreeMap;

use super::Config;
use super::error::FieldError;
use super::path::{KeyPath, Origins};

/// Prefix of every override variable.
pub const ENV_PREFIX: &str = "SWITCHBOARD_";
/// Separator between the parts of an override's key path.
pub const ENV_SEPARATOR: &str = "__";

/// A source of environment variables.
pub trait EnvSource {
    /// Returns every variable as a name and value pair.
    fn vars(&self) -> Vec<(String, String)>;
}

/// The real process environment. Variables whose name is not UTF-8 are
/// skipped; non-UTF-8 values are converted lossily.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn vars(&self) -> Vec<(String, String)> {
        std::env::vars_os()
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value.to_string_lossy().into_owned())))
            .collect()
    }
}

/// A fixed set of variables, for tests and embedding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapEnv(BTreeMap<String, String>);

impl MapEnv {
    /// Returns an empty environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns this environment with `name` set to `value`.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.insert(name.into(), value.into());
        self
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for MapEnv {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

impl EnvSource for MapEnv {
    fn vars(&self) -> Vec<(String, String)> {
        self.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// Applies every override in `env` to `root`, recording origins. Returns the
/// overrides that could not be applied; the others are applied regardless.
pub(crate) fn apply_overrides(root: &mut toml::Table, env: &dyn EnvSource, origins: &mut Origins) -> Vec<FieldError> {
    let mut vars: Vec<(String, String)> = env
        .vars()
        .into_iter()
        .filter(|(name, _)| name.strip_prefix(ENV_PREFIX).is_some_and(|rest| rest.contains(ENV_SEPARATOR)))
        .collect();
    // Sorted, a whole-table override (`SWITCHBOARD_SERVER__TLS`) lands before
    // the keys inside it (`SWITCHBOARD_SERVER__TLS__CERT_PATH`) refine it.
    vars.sort();

    let template = toml::Value::try_from(Config::default()).ok();
    let mut errors = Vec::new();
    for (var, raw) in vars {
        if let Err(error) = apply_one(root, &var, &raw, template.as_ref(), origins) {
            errors.push(error);
        }
    }
    errors
}

fn apply_one(
    root: &mut toml::Table,
    var: &str,
    raw: &str,
    template: Option<&toml::Value>,
    origins: &mut Origins,
) -> Result<(), FieldError> {
    let origin = Some(super::error::Origin::Env { var: var.to_owned() });
    let keys: Vec<String> = var[ENV_PREFIX.len()..].split(ENV_SEPARATOR).map(str::to_ascii_lowercase).collect();
    if keys.iter().any(String::is_empty) {
        return Err(FieldError::new("", "override name has an empty key between `__` separators").with_origin(origin));
    }
    let (last, parents) = keys.split_last().expect("split on a present separator");

    let mut table = root;
    let mut path = KeyPath::default();
    for key in parents {
        path = path.key(key);
        if !table.contains_key(key) {
            origins.created_by_env(&path, var);
        }
        let entry = table.entry(key.clone()).or_insert_with(|| toml::Table::new().into());
        table = match entry {
            toml::Value::Table(inner) => inner,
            toml::Value::Array(_) => {
                return Err(FieldError::new(
                    path.to_string(),
                    "is an array; override it whole with a TOML array value",
                )
                .with_origin(origin));
            }
            other => {
                return Err(FieldError::new(
                    path.to_string(),
                    format!("holds a value of type {}, not a table, so it has no keys", other.type_str()),
                )
                .with_origin(origin));
            }
        };
    }
    let path = path.key(last);
    let wants_string = matches!(lookup(template, &keys), Some(toml::Value::String(_)));
    table.insert(last.clone(), parse_value(raw, wants_string));
    origins.replaced_by_env(&path, var);
    Ok(())
}

fn lookup<'a>(template: Option<&'a toml::Value>, keys: &[String]) -> Option<&'a toml::Value> {
    keys.iter().try_fold(template?, |value, key| value.get(key))
}

/// Reads an override value: a TOML value when it is one, else the raw text.
/// Dates and times are kept as text since no key holds one.
fn parse_value(raw: &str, wants_string: bool) -> toml::Value {
    match raw.parse::<toml::Value>() {
        Ok(toml::Value::String(text)) => toml::Value::String(text),
        Ok(toml::Value::Datetime(_)) | Err(_) => toml::Value::String(raw.to_owned()),
        Ok(_) if wants_string => toml::Value::String(raw.to_owned()),
        Ok(value) => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_as_toml_then_fall_back_to_text() {
        assert_eq!(parse_value("10", false), toml::Value::Integer(10));
        assert_eq!(parse_value("true", false), toml::Value::Boolean(true));
        assert_eq!(parse_value("1.5", false), toml::Value::Float(1.5));
        assert_eq!(parse_value(r#"["a", "b"]"#, false), toml::Value::Array(vec!["a".into(), "b".into()]));
        assert_eq!(parse_value("plain text", false), toml::Value::String("plain text".into()));
        assert_eq!(parse_value(r#""quoted""#, false), toml::Value::String("quoted".into()));
        assert_eq!(parse_value("2024-01-01", false), toml::Value::String("2024-01-01".into()));
    }

    #[test]
    fn string_keys_keep_numeric_text() {
        assert_eq!(parse_value("12345", true), toml::Value::String("12345".into()));
        assert_eq!(parse_value("nan", true), toml::Value::String("nan".into()));
    }

    #[test]
    fn variables_without_separator_or_prefix_are_ignored() {
        let env =
            MapEnv::new().with("SWITCHBOARD_CONFIG", "/etc/x.toml").with("OTHER__THING", "1").with("PATH", "/bin");
        let mut root = toml::Table::new();
        let errors = apply_overrides(&mut root, &env, &mut Origins::default());
        assert!(errors.is_empty());
        assert!(root.is_empty());
    }

    #[test]
    fn map_env_collects_from_pairs() {
        let env: MapEnv = [("A", "1"), ("B", "2")].into_iter().collect();
        assert_eq!(env.vars(), vec![("A".into(), "1".into()), ("B".into(), "2".into())]);
    }
}
