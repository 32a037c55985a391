//! Accounts, keys and sharing: `logout`, `auth:*`, `passwd`, `signup`, `users*`,
//! `authorizations*`, `access*`, `teams*`, `members*`, `apps:transfer`, `transfers*`,
//! `audit`. The Heroku CLI's command names and output where it has them.

use super::login::read_secret;
use super::{Ctx, app_label, resolve_app};
use crate::api::Api;
use crate::cli::AppFlags;
use crate::format::{self, str_at};
use crate::transport::segment;
use crate::{netrc, settings};
use anyhow::{Result, bail};
use serde_json::{Value, json};

fn items(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// Revokes this machine's key when it is a login key (an expiring one), and forgets it.
pub async fn logout(ctx: &mut Ctx<'_>) -> Result<()> {
    let url = settings::api_url(ctx.env, None)?;
    let Some(key) = settings::api_key(ctx.env, &url)? else {
        return ctx.out("Not logged in.\n");
    };
    let api = Api::new(url.clone(), key.clone());
    // `~` is the key in use when it is a long-lived API key: that one stays (as Heroku's).
    if api.get("/oauth/authorizations/~").await.is_err() {
        if let Ok(list) = api.get("/oauth/authorizations").await {
            let hint = |a: &Value| {
                str_at(a, "/access_token/token")
                    .rsplit_once("**********")
                    .map(|(_, suffix)| suffix.to_string())
            };
            for a in items(&list) {
                if hint(a).is_some_and(|s| !s.is_empty() && key.ends_with(&s)) {
                    let _ = api
                        .delete(&format!(
                            "/oauth/authorizations/{}",
                            segment(str_at(a, "/id"))
                        ))
                        .await;
                }
            }
        }
    }
    if let Some(path) = settings::netrc_path(ctx.env) {
        netrc::remove_entry(&path, &url.authority)?;
    }
    ctx.out("Logged out.\n")
}

pub fn token(ctx: &mut Ctx<'_>) -> Result<()> {
    let url = settings::api_url(ctx.env, None)?;
    match settings::api_key(ctx.env, &url)? {
        Some(k) => ctx.out(&format!("{k}\n")),
        None => bail!("Not logged in to {}. Run `kiln login`.", url.base),
    }
}

pub async fn whoami(ctx: &mut Ctx<'_>) -> Result<()> {
    let account = ctx.api()?.get("/account").await?;
    ctx.out(&format!("{}\n", str_at(&account, "/email")))
}

/// Changes the password; the API ends every key and hands back a new one for this machine.
pub async fn passwd(ctx: &mut Ctx<'_>) -> Result<()> {
    let api = ctx.api()?;
    let current = read_secret(ctx, "Current password")?;
    let new = read_secret(ctx, "New password")?;
    if ctx.env.stdin_is_tty() && read_secret(ctx, "New password again")? != new {
        bail!("The two new passwords differ; nothing changed.");
    }
    let auth = api
        .put(
            "/account/password",
            &json!({ "current_password": current, "password": new }),
        )
        .await?;
    let token = str_at(&auth, "/access_token/token");
    let email = str_at(&auth, "/user/email");
    let url = settings::api_url(ctx.env, None)?;
    if let (false, Some(path)) = (token.is_empty(), settings::netrc_path(ctx.env)) {
        netrc::write_entry(&path, &url.authority, email, token)?;
    }
    ctx.out("Password changed. Every other API key of yours has stopped working.\n")
}

pub async fn signup(
    ctx: &mut Ctx<'_>,
    api_url: Option<&str>,
    email: &str,
    invitation: Option<&str>,
    name: &str,
) -> Result<()> {
    let url = settings::api_url(ctx.env, api_url)?;
    let password = read_secret(ctx, "Password")?;
    // Sign-up needs no key; the client still sends one, which the API ignores.
    let api = Api::new(url, "signup".into());
    let account = api
        .post(
            "/kiln/signup",
            &json!({ "email": email, "password": password, "invitation": invitation, "name": name }),
        )
        .await?;
    ctx.out(&format!(
        "Account {} created. Log in with `kiln login`.\n",
        str_at(&account, "/email")
    ))
}

pub async fn users(ctx: &mut Ctx<'_>, as_json: bool) -> Result<()> {
    let list = ctx.api()?.get("/kiln/users").await?;
    if as_json {
        return ctx.out(&format::json(&list));
    }
    let mut rows = vec![vec!["Email".to_string(), "Name".into(), "Admin".into()]];
    for u in items(&list) {
        rows.push(vec![
            str_at(u, "/email").into(),
            str_at(u, "/name").into(),
            if u["admin"].as_bool() == Some(true) {
                "yes"
            } else {
                ""
            }
            .into(),
        ]);
    }
    ctx.out(&format::table(&rows))
}

pub async fn create_user(ctx: &mut Ctx<'_>, email: &str, name: &str, admin: bool) -> Result<()> {
    let api = ctx.api()?;
    let password = read_secret(ctx, "Password for the new account")?;
    ctx.action(&format!("Creating account {email}"))?;
    match api
        .post(
            "/kiln/users",
            &json!({ "email": email, "name": name, "password": password, "admin": admin }),
        )
        .await
    {
        Ok(_) => ctx.done(""),
        Err(e) => ctx.failed(e),
    }
}

pub async fn invite(ctx: &mut Ctx<'_>, email: &str) -> Result<()> {
    let inv = ctx
        .api()?
        .post("/kiln/invitations", &json!({ "email": email }))
        .await?;
    ctx.out(&format!(
        "Invited {email} (the invitation expires {}). Send them this command; it works once, for their address only:\n  {}\n",
        format::when(str_at(&inv, "/expires_at")),
        str_at(&inv, "/command")
    ))
}

fn authorization_table(list: &Value) -> String {
    let mut rows: Vec<Vec<String>> = items(list)
        .iter()
        .map(|a| {
            vec![
                str_at(a, "/description").to_string(),
                str_at(a, "/id").to_string(),
                a["scope"]
                    .as_array()
                    .map(|s| {
                        s.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default(),
            ]
        })
        .collect();
    rows.sort();
    rows.insert(0, vec!["Description".into(), "ID".into(), "Scope".into()]);
    format::table(&rows)
}

pub async fn authorizations(ctx: &mut Ctx<'_>, as_json: bool) -> Result<()> {
    let list = ctx.api()?.get("/oauth/authorizations").await?;
    if as_json {
        return ctx.out(&format::json(&list));
    }
    if items(&list).is_empty() {
        return ctx.out("No OAuth authorizations.\n");
    }
    ctx.out(&authorization_table(&list))
}

fn show_authorization(a: &Value) -> String {
    let mut pairs = vec![
        ("ID", str_at(a, "/id").to_string()),
        ("Description", str_at(a, "/description").to_string()),
        ("Token", str_at(a, "/access_token/token").to_string()),
    ];
    if let Some(s) = a["access_token"]["expires_in"].as_i64() {
        pairs.push(("Expires in", format!("{s} seconds")));
    }
    format::styled_object(&pairs)
}

pub async fn create_authorization(
    ctx: &mut Ctx<'_>,
    description: &str,
    expires_in: Option<u64>,
    short: bool,
) -> Result<()> {
    let mut body = json!({ "scope": ["global"] });
    if !description.is_empty() {
        body["description"] = json!(description);
    }
    if let Some(e) = expires_in {
        body["expires_in"] = json!(e);
    }
    let a = ctx.api()?.post("/oauth/authorizations", &body).await?;
    if short {
        return ctx.out(&format!("{}\n", str_at(&a, "/access_token/token")));
    }
    ctx.out(&show_authorization(&a))
}

pub async fn revoke_authorization(ctx: &mut Ctx<'_>, id: &str) -> Result<()> {
    let a = ctx
        .api()?
        .delete(&format!("/oauth/authorizations/{}", segment(id)))
        .await?;
    ctx.out(&format!(
        "Revoked authorization {} ({}).\n",
        str_at(&a, "/id"),
        str_at(&a, "/description")
    ))
}

pub async fn rotate_authorization(ctx: &mut Ctx<'_>, id: &str) -> Result<()> {
    let a = ctx
        .api()?
        .post(
            &format!(
                "/oauth/authorizations/{}/actions/regenerate-tokens",
                segment(id)
            ),
            &json!({}),
        )
        .await?;
    ctx.out(&show_authorization(&a))
}

fn permission_names(v: &Value) -> String {
    let mut names: Vec<&str> = items(&v["permissions"])
        .iter()
        .map(|p| str_at(p, "/name"))
        .collect();
    names.sort_unstable();
    names.join(", ")
}

pub async fn list(ctx: &mut Ctx<'_>, flags: &AppFlags, as_json: bool) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let list = ctx
        .api()?
        .get(&format!("/apps/{}/collaborators", segment(&app)))
        .await?;
    if as_json {
        return ctx.out(&format::json(&list));
    }
    let with_perms = items(&list).iter().any(|c| c.get("permissions").is_some());
    let mut rows: Vec<Vec<String>> = items(&list)
        .iter()
        .map(|c| {
            let mut row = vec![
                str_at(c, "/user/email").to_string(),
                str_at(c, "/role").to_string(),
            ];
            if with_perms {
                row.push(permission_names(c));
            }
            row
        })
        .collect();
    rows.sort();
    let mut head = vec!["Email".to_string(), "Role".to_string()];
    if with_perms {
        head.push("Permissions".into());
    }
    rows.insert(0, head);
    ctx.out(&format::table(&rows))
}

pub async fn add(
    ctx: &mut Ctx<'_>,
    flags: &AppFlags,
    email: &str,
    permissions: &[String],
    update: bool,
) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let api = ctx.api()?;
    let mut body = json!({ "user": email });
    if !permissions.is_empty() {
        body["permissions"] = json!(permissions);
    }
    let verb = if update { "Updating" } else { "Adding" };
    ctx.action(&format!("{verb} {email} access to {}", app_label(&app)))?;
    let path = format!("/apps/{}/collaborators", segment(&app));
    let result = if update {
        api.patch(&format!("{path}/{}", segment(email)), &body)
            .await
    } else {
        api.post(&path, &body).await
    };
    match result {
        Ok(c) => ctx.done(&format!("({})", permission_names(&c)).replace("()", "")),
        Err(e) => ctx.failed(e),
    }
}

pub async fn remove(ctx: &mut Ctx<'_>, flags: &AppFlags, email: &str) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let api = ctx.api()?;
    ctx.action(&format!("Removing {email} access from {}", app_label(&app)))?;
    match api
        .delete(&format!(
            "/apps/{}/collaborators/{}",
            segment(&app),
            segment(email)
        ))
        .await
    {
        Ok(_) => ctx.done(""),
        Err(e) => ctx.failed(e),
    }
}

pub async fn teams(ctx: &mut Ctx<'_>, as_json: bool) -> Result<()> {
    let list = ctx.api()?.get("/teams").await?;
    if as_json {
        return ctx.out(&format::json(&list));
    }
    if items(&list).is_empty() {
        return ctx.out("You are not a member of any team.\n");
    }
    let mut rows: Vec<Vec<String>> = items(&list)
        .iter()
        .map(|t| {
            vec![
                str_at(t, "/name").to_string(),
                str_at(t, "/role").to_string(),
            ]
        })
        .collect();
    rows.sort();
    rows.insert(0, vec!["Team".into(), "Role".into()]);
    ctx.out(&format::table(&rows))
}

pub async fn create_team(ctx: &mut Ctx<'_>, name: &str) -> Result<()> {
    let api = ctx.api()?;
    ctx.action(&format!("Creating team {name}"))?;
    match api.post("/teams", &json!({ "name": name })).await {
        Ok(_) => ctx.done(""),
        Err(e) => ctx.failed(e),
    }
}

pub async fn members(ctx: &mut Ctx<'_>, team: &str, as_json: bool) -> Result<()> {
    let list = ctx
        .api()?
        .get(&format!("/teams/{}/members", segment(team)))
        .await?;
    if as_json {
        return ctx.out(&format::json(&list));
    }
    let mut rows: Vec<Vec<String>> = items(&list)
        .iter()
        .map(|m| {
            vec![
                str_at(m, "/email").to_string(),
                str_at(m, "/role").to_string(),
            ]
        })
        .collect();
    rows.sort();
    rows.insert(0, vec!["Email".into(), "Role".into()]);
    ctx.out(&format::table(&rows))
}

pub async fn add_member(ctx: &mut Ctx<'_>, team: &str, email: &str, role: &str) -> Result<()> {
    let api = ctx.api()?;
    ctx.action(&format!("Adding {email} to {team} as {role}"))?;
    match api
        .put(
            &format!("/teams/{}/members", segment(team)),
            &json!({ "email": email, "role": role }),
        )
        .await
    {
        Ok(_) => ctx.done(""),
        Err(e) => ctx.failed(e),
    }
}

pub async fn remove_member(ctx: &mut Ctx<'_>, team: &str, email: &str) -> Result<()> {
    let api = ctx.api()?;
    ctx.action(&format!("Removing {email} from {team}"))?;
    match api
        .delete(&format!(
            "/teams/{}/members/{}",
            segment(team),
            segment(email)
        ))
        .await
    {
        Ok(_) => ctx.done(""),
        Err(e) => ctx.failed(e),
    }
}

pub async fn transfer(ctx: &mut Ctx<'_>, flags: &AppFlags, recipient: &str) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let api = ctx.api()?;
    ctx.action(&format!("Transferring {} to {recipient}", app_label(&app)))?;
    let result = if recipient.contains('@') {
        api.post(
            "/account/app-transfers",
            &json!({ "app": app, "recipient": recipient }),
        )
        .await
    } else {
        api.patch(
            &format!("/teams/apps/{}", segment(&app)),
            &json!({ "owner": recipient }),
        )
        .await
    };
    match result {
        Ok(t) if str_at(&t, "/state") == "pending" => {
            ctx.done("")?;
            ctx.out(&format!(
                "{recipient} has to accept it: `kiln transfers:accept {}`\n",
                str_at(&t, "/id")
            ))
        }
        Ok(_) => ctx.done(""),
        Err(e) => ctx.failed(e),
    }
}

pub async fn transfers(ctx: &mut Ctx<'_>) -> Result<()> {
    let list = ctx.api()?.get("/account/app-transfers").await?;
    if items(&list).is_empty() {
        return ctx.out("No app transfers.\n");
    }
    let mut rows = vec![vec![
        "ID".to_string(),
        "App".into(),
        "From".into(),
        "To".into(),
        "State".into(),
    ]];
    for t in items(&list) {
        rows.push(
            [
                "/id",
                "/app/name",
                "/owner/email",
                "/recipient/email",
                "/state",
            ]
            .iter()
            .map(|p| str_at(t, p).to_string())
            .collect(),
        );
    }
    ctx.out(&format::table(&rows))
}

pub async fn settle(ctx: &mut Ctx<'_>, id: &str, state: &str) -> Result<()> {
    let t = ctx
        .api()?
        .patch(
            &format!("/account/app-transfers/{}", segment(id)),
            &json!({ "state": state }),
        )
        .await?;
    ctx.out(&format!(
        "Transfer of {} to {}: {}\n",
        str_at(&t, "/app/name"),
        str_at(&t, "/recipient/email"),
        str_at(&t, "/state")
    ))
}

pub async fn audit(ctx: &mut Ctx<'_>, flags: &AppFlags, num: u32) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let list = ctx
        .api()?
        .get(&format!("/apps/{}/audit?limit={num}", segment(&app)))
        .await?;
    let mut out = String::new();
    for e in items(&list) {
        out.push_str(&format!(
            "{}  {}  {}\n",
            str_at(e, "/created_at"),
            str_at(e, "/user/email"),
            str_at(e, "/action")
        ));
    }
    ctx.out(&out)
}
