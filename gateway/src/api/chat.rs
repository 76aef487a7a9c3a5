//! Chat methods of the server API: the client rpc methods with `_` for `.`
//! (`message_edit`, `reaction_add`, …) plus `status` (many users at once).
//!
//! The backend is trusted: it acts as the `user` it names (empty: nobody)
//! and may edit and delete any message. Params are the rpc's plus `user`.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::ApiError;
use crate::hub::{Actor, ChatCall, Hub};
use crate::protocol::ClientInfo;

/// The API method for each chat rpc method.
fn rpc_method(method: &str) -> Option<&'static str> {
    crate::hub::CHAT_METHODS.iter().copied().find(|m| m.replace('.', "_") == method && *m != "status.set")
}

pub(super) fn exists(method: &str) -> bool {
    method == "status" || rpc_method(method).is_some()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ActingUser {
    user: String,
}

#[derive(Deserialize)]
struct Users {
    users: Vec<String>,
}

pub(super) async fn call(hub: &Hub, method: &str, params: &RawValue) -> Result<Value, ApiError> {
    if method == "status" {
        let users: Users = serde_json::from_str(params.get()).map_err(ApiError::bad_request)?;
        let max = hub.config().status.max_users;
        if users.users.len() as u64 > max.min(1000) {
            return Err(ApiError::bad_request(format!("too many users (max {})", max.min(1000))));
        }
        return Ok(json!({ "statuses": hub.statuses(&users.users) }));
    }
    let Some(rpc) = rpc_method(method) else {
        return Err(ApiError { code: 404, message: format!("unknown method {method:?}") });
    };
    let acting: ActingUser = serde_json::from_str(params.get()).map_err(ApiError::bad_request)?;
    let call = ChatCall::parse(rpc, params.get().as_bytes()).expect("a chat method")?;
    if matches!(call, ChatCall::ReadMark { .. } | ChatCall::Unread { .. }) && acting.user.is_empty() {
        return Err(ApiError::bad_request("user required"));
    }
    let info = (!acting.user.is_empty()).then(|| ClientInfo {
        user: acting.user.clone(),
        client: String::new(),
        ..ClientInfo::default()
    });
    let actor = Actor { user: acting.user, info, admin: true };
    Ok(hub.chat_call(&actor, call).await?)
}
