//! The `switchboard` command: parses arguments, loads and validates the
//! config, sets up logging and signals, and hands over to
//! [`switchboard::run`]. Everything reusable lives in the library.
//!
//! Exit codes: 0 success, 64 bad configuration or arguments, 1 any other
//! failure, 130 a second shutdown signal forced the exit.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use serde::Serialize;
use serde_json::value::RawValue;
use switchboard::config::{Config, ConfigError};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

/// Exit code for configuration and usage errors (`EX_USAGE`).
const EXIT_CONFIG: u8 = 64;
/// Exit code when a second signal cuts the drain short (128 + SIGINT).
const EXIT_FORCED: i32 = 130;

#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about = "A self-hosted realtime gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the gateway until SIGTERM or SIGINT (a second one exits at once).
    Serve {
        /// Config file; without one the built-in defaults are used.
        /// SWITCHBOARD_<SECTION>__<KEY> variables override either.
        #[arg(long, value_name = "FILE", env = "SWITCHBOARD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validates a config file (with environment overrides applied) and
    /// prints `ok` or every problem.
    CheckConfig {
        /// Config file to check.
        file: PathBuf,
    },
    /// Prints an HS256 token signed with the config's auth.token_hmac_secret,
    /// for development and tests.
    Token {
        /// User id (`sub` claim).
        #[arg(long)]
        sub: String,
        /// Makes it a subscription token for this channel (`channel` claim).
        #[arg(long)]
        channel: Option<String>,
        /// Lifetime in seconds (`exp` claim = now + this).
        #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
        ttl_secs: u64,
        /// Config file holding the secret; without one the defaults are used.
        #[arg(long, value_name = "FILE", env = "SWITCHBOARD_CONFIG")]
        config: Option<PathBuf>,
        /// Connection info attached to the token (`info` claim), as raw JSON.
        #[arg(long, value_name = "JSON")]
        info: Option<String>,
    },
    /// Plugin development helpers.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Prints the version.
    Version,
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Scaffolds a Rust plugin: a crate DIR/NAME using the plugin SDK, added
    /// to the plugins workspace in DIR/Cargo.toml.
    New {
        /// Crate name: lowercase letters, digits and dashes, starting with a
        /// letter.
        name: String,
        /// The plugins workspace.
        #[arg(long, value_name = "DIR", default_value = "plugins")]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve { config } => serve(config.as_deref()),
        Command::CheckConfig { file } => match Config::load_validated(Some(&file)) {
            Ok(_) => {
                println!("ok");
                ExitCode::SUCCESS
            }
            Err(error) => config_failure(Some(&file), &error),
        },
        Command::Token { sub, channel, ttl_secs, config, info } => {
            let config = match Config::load_validated(config.as_deref()) {
                Ok(config) => config,
                Err(error) => return config_failure(config.as_deref(), &error),
            };
            match mint_token(&config, sub, channel, ttl_secs, info.as_deref(), now_secs()) {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("switchboard: {error:#}");
                    ExitCode::from(EXIT_CONFIG)
                }
            }
        }
        Command::Plugin { command: PluginCommand::New { name, dir } } => match scaffold_plugin(&dir, &name) {
            Ok(crate_dir) => {
                println!("created {}; build it with `cargo build --release` in {}", crate_dir.display(), dir.display());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("switchboard: {error:#}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Version => {
            println!("switchboard {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}

/// Prints every config problem to stderr and returns the config exit code.
fn config_failure(path: Option<&Path>, error: &ConfigError) -> ExitCode {
    match path {
        // A read error names the file itself.
        Some(path) if !matches!(error, ConfigError::Read { .. }) => {
            eprintln!("switchboard: {}: {error}", path.display())
        }
        _ => eprintln!("switchboard: {error}"),
    }
    ExitCode::from(EXIT_CONFIG)
}

fn serve(path: Option<&Path>) -> ExitCode {
    let config = match Config::load_validated(path) {
        Ok(config) => config,
        Err(error) => return config_failure(path, &error),
    };
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
        .and_then(|runtime| runtime.block_on(serve_with_telemetry(config)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error!(error = format!("{error:#}"), "gateway stopped with an error");
            ExitCode::FAILURE
        }
    }
}

/// Installs logging and span export (inside the runtime: the exporter is a
/// Tokio task), serves, then flushes the spans still queued.
async fn serve_with_telemetry(config: Config) -> anyhow::Result<()> {
    let settings = switchboard::transport::telemetry_settings_from_env(&config.telemetry);
    let telemetry = switchboard::telemetry::init(&settings).context("cannot start telemetry")?;
    for key in config.dev_credentials_in_use() {
        warn!(
            key,
            "USING THE SHIPPED DEVELOPMENT CREDENTIAL: it is public, so anyone can mint tokens \
             or call the API; set your own before this gateway is reachable by others"
        );
    }
    let result = serve_until_signalled(config).await;
    // Shutdown blocks on the export task, which needs the runtime running.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    result
}

async fn serve_until_signalled(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    info!(addr = %listener.local_addr()?, "listening");

    let first_signal = shutdown_signal().context("cannot install signal handlers")?;
    let (draining_tx, draining_rx) = tokio::sync::oneshot::channel();
    let shutdown = async move {
        let name = first_signal.await;
        info!(signal = name, "shutting down; send it again to exit without draining");
        // The receiver is gone only when run() has returned already.
        let _ = draining_tx.send(());
    };

    tokio::select! {
        result = switchboard::run(config, listener, shutdown) => {
            result.context("gateway failed")?;
            info!("stopped");
            Ok(())
        }
        () = second_signal(draining_rx) => {
            warn!("second signal: exiting without draining");
            std::process::exit(EXIT_FORCED);
        }
    }
}

/// Completes on the first signal after draining started; never, if it did not.
async fn second_signal(draining: tokio::sync::oneshot::Receiver<()>) {
    if draining.await.is_err() {
        return std::future::pending().await;
    }
    // Registered only now, so the signal that started the drain does not count.
    match shutdown_signal() {
        Ok(second) => {
            second.await;
        }
        Err(_) => std::future::pending().await,
    }
}

/// Registers SIGTERM and SIGINT handlers now and returns a future that
/// completes with the name of the first of them to arrive afterwards.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = &'static str> + Send + 'static> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        }
    })
}

/// Claims of a connection token, or of a subscription token when `channel`
/// is set. `aud` and `iss` are added when the config requires them, so the
/// token passes this gateway's own checks.
#[derive(Debug, Serialize)]
struct Claims<'a> {
    sub: String,
    exp: u64,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    info: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "str::is_empty")]
    aud: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    iss: &'a str,
}

fn mint_token(
    config: &Config,
    sub: String,
    channel: Option<String>,
    ttl_secs: u64,
    info: Option<&str>,
    now: u64,
) -> anyhow::Result<String> {
    anyhow::ensure!(
        config.auth.algorithms.iter().any(|a| a == "HS256"),
        "auth.algorithms does not list HS256, so the gateway would reject this token"
    );
    anyhow::ensure!(
        !config.auth.token_hmac_secret.is_empty(),
        "auth.token_hmac_secret is empty, so there is no key to sign with"
    );
    let info = info.map(|raw| RawValue::from_string(raw.to_owned())).transpose().context("--info is not valid JSON")?;
    let claims = Claims {
        sub,
        exp: now.saturating_add(ttl_secs),
        iat: now,
        channel,
        info,
        aud: &config.auth.audience,
        iss: &config.auth.issuer,
    };
    let key = jsonwebtoken::EncodingKey::from_secret(config.auth.token_hmac_secret.as_bytes());
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    jsonwebtoken::encode(&header, &claims, &key).context("cannot sign the token")
}

const PLUGIN_CARGO_TEMPLATE: &str = include_str!("../../plugin-sdk/templates/Cargo.toml.tmpl");
const PLUGIN_LIB_TEMPLATE: &str = include_str!("../../plugin-sdk/templates/lib.rs.tmpl");

/// Writes `workspace/name/{Cargo.toml,src/lib.rs}` from the SDK templates and
/// appends `name` to the workspace's `members`; returns the crate directory.
fn scaffold_plugin(workspace: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && name.len() <= 64;
    anyhow::ensure!(
        valid,
        "plugin name {name:?} must be lowercase letters, digits and dashes, start with a letter (max 64 characters)"
    );
    let manifest_path = workspace.join("Cargo.toml");
    let manifest = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("cannot read the plugins workspace {}", manifest_path.display()))?;
    let crate_dir = workspace.join(name);
    anyhow::ensure!(!crate_dir.exists(), "{} already exists", crate_dir.display());
    let manifest = add_workspace_member(&manifest, name)?;

    let type_name: String = name
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect();
    let fill = |template: &str| {
        template.replace("{{name}}", name).replace("{{crate}}", &name.replace('-', "_")).replace("{{type}}", &type_name)
    };
    std::fs::create_dir_all(crate_dir.join("src")).with_context(|| format!("cannot create {}", crate_dir.display()))?;
    std::fs::write(crate_dir.join("Cargo.toml"), fill(PLUGIN_CARGO_TEMPLATE))?;
    std::fs::write(crate_dir.join("src/lib.rs"), fill(PLUGIN_LIB_TEMPLATE))?;
    std::fs::write(&manifest_path, manifest).with_context(|| format!("cannot update {}", manifest_path.display()))?;
    Ok(crate_dir)
}

/// The workspace manifest with `name` appended to `[workspace] members`.
/// Edits the text rather than re-serializing, so comments and layout stay.
fn add_workspace_member(manifest: &str, name: &str) -> anyhow::Result<String> {
    let parsed: toml::Table = toml::from_str(manifest).context("the plugins Cargo.toml is not valid TOML")?;
    let members = parsed
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(|m| m.as_array())
        .context("the plugins Cargo.toml has no [workspace] members list")?;
    anyhow::ensure!(
        !members.iter().any(|m| m.as_str() == Some(name)),
        "{name} is already a member of the plugins workspace"
    );
    let start = manifest.find("members").context("no members key")?;
    let open = start + manifest[start..].find('[').context("members is not a list")?;
    let close = open + manifest[open..].find(']').context("members list is not closed")?;
    let inner = manifest[open + 1..close].trim_end();
    let (inner, comma) = match inner.strip_suffix(',') {
        Some(stripped) => (stripped, true),
        None => (inner, false),
    };
    let multiline = manifest[open..close].contains('\n');
    let entry = format!("\"{name}\"");
    let list = match (inner.trim().is_empty(), multiline) {
        (true, _) => entry,
        (false, true) => format!("{inner},\n    {entry}{}\n", if comma { "," } else { "" }),
        (false, false) => format!("{inner}, {entry}"),
    };
    let edited = format!("{}{}{}", &manifest[..=open], list, &manifest[close..]);
    // The edit must parse and list the new member, or it is not written.
    let check: toml::Table = toml::from_str(&edited).context("editing members produced invalid TOML")?;
    let listed = check["workspace"]["members"].as_array().is_some_and(|m| m.iter().any(|v| v.as_str() == Some(name)));
    anyhow::ensure!(listed, "could not add {name} to the members list");
    Ok(edited)
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};

    use super::*;

    fn decode(token: &str, config: &Config) -> serde_json::Value {
        let key = DecodingKey::from_secret(config.auth.token_hmac_secret.as_bytes());
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation).unwrap().claims
    }

    fn temp_workspace(members: &str) -> PathBuf {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("switchboard-scaffold-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let manifest =
            format!("# plugins\n[workspace]\nresolver = \"3\"\n{members}\n\n[profile.release]\nlto = true\n");
        std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
        dir
    }

    fn members(dir: &Path) -> Vec<String> {
        let manifest: toml::Table = toml::from_str(&std::fs::read_to_string(dir.join("Cargo.toml")).unwrap()).unwrap();
        manifest["workspace"]["members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_owned()).collect()
    }

    #[test]
    fn plugin_new_scaffolds_a_member_crate() {
        let dir = temp_workspace(r#"members = ["auth-policy", "webhook"]"#);
        let crate_dir = scaffold_plugin(&dir, "rate-guard").unwrap();
        assert_eq!(crate_dir, dir.join("rate-guard"));
        assert_eq!(members(&dir), ["auth-policy", "webhook", "rate-guard"]);
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(manifest.starts_with("# plugins\n") && manifest.contains("lto = true"), "layout kept: {manifest}");

        let cargo: toml::Table =
            toml::from_str(&std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap()).unwrap();
        assert_eq!(cargo["package"]["name"].as_str(), Some("rate-guard"));
        assert_eq!(cargo["lib"]["crate-type"].as_array().unwrap()[0].as_str(), Some("cdylib"));
        assert!(cargo["dependencies"].get("switchboard-plugin-sdk").is_some());
        let lib = std::fs::read_to_string(crate_dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("pub struct RateGuard {"));
        assert!(lib.contains("export_plugin!(RateGuard, hooks: [publish]);"));
        assert!(lib.contains("release/rate_guard.wasm"));
        assert!(!lib.contains("{{"), "every placeholder filled");

        // Twice, or with a bad name: refused, nothing changes.
        assert!(scaffold_plugin(&dir, "rate-guard").unwrap_err().to_string().contains("already exists"));
        for bad in ["Rate", "9lives", "a_b", "", "x-", "../x"] {
            assert!(scaffold_plugin(&dir, bad).is_err(), "{bad:?}");
        }
        assert_eq!(members(&dir), ["auth-policy", "webhook", "rate-guard"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn members_edit_keeps_multiline_and_empty_lists() {
        let multi = "[workspace]\nmembers = [\n    \"a\",\n    \"b\",\n]\n";
        let edited = add_workspace_member(multi, "c").unwrap();
        assert_eq!(edited, "[workspace]\nmembers = [\n    \"a\",\n    \"b\",\n    \"c\",\n]\n");
        assert_eq!(
            add_workspace_member("[workspace]\nmembers = []\n", "c").unwrap(),
            "[workspace]\nmembers = [\"c\"]\n"
        );
        assert!(add_workspace_member("[workspace]\nmembers = [\"c\"]\n", "c").is_err());
        assert!(add_workspace_member("[package]\nname = \"x\"\n", "c").is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn connection_token_has_sub_and_exp() {
        let config = Config::default();
        let token = mint_token(&config, "alice".into(), None, 60, None, 1000).unwrap();
        let claims = decode(&token, &config);
        assert_eq!(claims, serde_json::json!({"sub": "alice", "exp": 1060, "iat": 1000}));
    }

    #[test]
    fn subscription_token_carries_channel_info_and_required_claims() {
        let mut config = Config::default();
        config.auth.audience = "chat-app".into();
        config.auth.issuer = "backend".into();
        let info = Some(r#"{"name": "Alice"}"#);
        let token = mint_token(&config, "alice".into(), Some("chat:1".into()), 3600, info, 0).unwrap();
        let claims = decode(&token, &config);
        assert_eq!(claims["channel"], "chat:1");
        assert_eq!(claims["info"], serde_json::json!({"name": "Alice"}));
        assert_eq!(claims["aud"], "chat-app");
        assert_eq!(claims["iss"], "backend");
        assert_eq!(claims["exp"], 3600);
    }

    #[test]
    fn token_refuses_bad_info_and_missing_hs256() {
        let config = Config::default();
        let error = mint_token(&config, "a".into(), None, 1, Some("{nope"), 0).unwrap_err();
        assert!(format!("{error:#}").starts_with("--info is not valid JSON"));

        let mut config = Config::default();
        config.auth.algorithms = vec!["RS256".into()];
        assert!(mint_token(&config, "a".into(), None, 1, None, 0).is_err());
        let mut config = Config::default();
        config.auth.token_hmac_secret.clear();
        assert!(mint_token(&config, "a".into(), None, 1, None, 0).is_err());
    }
}
