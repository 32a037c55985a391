//! Add-ons and their attachments. An add-on belongs to the app that owns it; attachments make
//! it visible to apps (its owner first) under a name, and each attachment's config vars
//! (`<NAME>_<KEY>`) are part of that app's config. Every change that adds or removes
//! attachment vars appends one release to each app it touches, in the same transaction,
//! worded as Heroku words it (see `kiln_model::addon`).

use super::common::{
    DbContext, all_rows, bad_column, map_json, new_id, one_row, require_account, resolve_app,
    string_map, ts,
};
use super::{apps, releases};
use crate::{Release, Result, StoreError};
use kiln_model::Timestamp;
use kiln_model::addon::{AddonState, attachment_config, validate_attachment_name};
use kiln_model::config::ConfigVars;
use kiln_model::records::{Addon, AddonAttachment, NewAddon, NewRelease};
use kiln_model::release::ReleaseStatus;
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::collections::BTreeMap;

/// The schema step that adds the tables (appended to the SQLite migrations).
pub(crate) const MIGRATION: &str = r#"
    CREATE TABLE addons (
        id                TEXT PRIMARY KEY,
        name              TEXT NOT NULL UNIQUE,
        app_id            TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        service           TEXT NOT NULL,
        plan              TEXT NOT NULL,
        state             TEXT NOT NULL,
        config            TEXT NOT NULL,
        provision_message TEXT NOT NULL,
        created_at        INTEGER NOT NULL,
        updated_at        INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX addons_app ON addons(app_id, created_at);
    CREATE TABLE addon_attachments (
        id         TEXT PRIMARY KEY,
        addon_id   TEXT NOT NULL REFERENCES addons(id) ON DELETE CASCADE,
        app_id     TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        name       TEXT NOT NULL,
        namespace  TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        UNIQUE (app_id, name)
    ) STRICT;
    CREATE INDEX addon_attachments_addon ON addon_attachments(addon_id);
    ALTER TABLE releases ADD COLUMN addon_plans TEXT NOT NULL DEFAULT '[]';
"#;

const SELECT: &str = "SELECT a.id, a.name, a.app_id, p.name, a.service, a.plan, a.state, kiln_open('addons.config:' || a.id, a.config), \
     a.provision_message, a.created_at, a.updated_at FROM addons a JOIN apps p ON p.id = a.app_id";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Addon> {
    let state: String = r.get(6)?;
    Ok(Addon {
        id: r.get(0)?,
        name: r.get(1)?,
        app_id: r.get(2)?,
        app_name: r.get(3)?,
        service: r.get(4)?,
        plan: r.get(5)?,
        state: AddonState::parse(&state)
            .ok_or_else(|| bad_column(6, format!("unknown add-on state {state:?}")))?,
        config: string_map(r, 7)?,
        provision_message: r.get(8)?,
        created_at: ts(r, 9)?,
        updated_at: ts(r, 10)?,
    })
}

const SELECT_ATTACHMENT: &str = "SELECT t.id, t.name, t.addon_id, a.name, a.app_id, o.name, a.service, a.plan, \
     t.app_id, p.name, t.namespace, t.created_at, t.updated_at FROM addon_attachments t \
     JOIN addons a ON a.id = t.addon_id JOIN apps o ON o.id = a.app_id JOIN apps p ON p.id = t.app_id";

fn attachment_from_row(r: &Row<'_>) -> rusqlite::Result<AddonAttachment> {
    Ok(AddonAttachment {
        id: r.get(0)?,
        name: r.get(1)?,
        addon_id: r.get(2)?,
        addon_name: r.get(3)?,
        addon_app_id: r.get(4)?,
        addon_app_name: r.get(5)?,
        addon_service: r.get(6)?,
        addon_plan: r.get(7)?,
        app_id: r.get(8)?,
        app_name: r.get(9)?,
        namespace: r.get(10)?,
        created_at: ts(r, 11)?,
        updated_at: ts(r, 12)?,
    })
}

/// An add-on by id or name.
pub(super) fn get(conn: &Connection, id_or_name: &str) -> Result<Addon> {
    one_row(
        conn,
        &format!("{SELECT} WHERE a.id = ?1 OR a.name = ?1"),
        [id_or_name],
        from_row,
        "add-on",
    )
}

pub(super) fn all(conn: &Connection) -> Result<Vec<Addon>> {
    all_rows(
        conn,
        &format!("{SELECT} ORDER BY a.created_at"),
        [],
        from_row,
        "listing add-ons",
    )
}

/// The add-ons an app owns.
pub(super) fn of_app(conn: &Connection, app: &str) -> Result<Vec<Addon>> {
    let app = resolve_app(conn, app)?;
    all_rows(
        conn,
        &format!("{SELECT} WHERE a.app_id = ?1 ORDER BY a.created_at, a.name"),
        [app],
        from_row,
        "listing an app's add-ons",
    )
}

/// The add-ons of every app an account owns.
pub(super) fn of_owner(conn: &Connection, account_id: &str) -> Result<Vec<Addon>> {
    all_rows(
        conn,
        &format!(
            "{SELECT} WHERE p.id IN ({}) ORDER BY a.created_at, a.name",
            super::tenancy::VISIBLE_APPS
        ),
        [account_id],
        from_row,
        "listing an account's add-ons",
    )
}

pub(super) fn attachments_of_app(conn: &Connection, app: &str) -> Result<Vec<AddonAttachment>> {
    let app = resolve_app(conn, app)?;
    all_rows(
        conn,
        &format!("{SELECT_ATTACHMENT} WHERE t.app_id = ?1 ORDER BY t.created_at, t.name"),
        [app],
        attachment_from_row,
        "listing an app's attachments",
    )
}

pub(super) fn attachments_of_addon(
    conn: &Connection,
    addon_id: &str,
) -> Result<Vec<AddonAttachment>> {
    all_rows(
        conn,
        &format!("{SELECT_ATTACHMENT} WHERE t.addon_id = ?1 ORDER BY t.created_at, t.name"),
        [addon_id],
        attachment_from_row,
        "listing an add-on's attachments",
    )
}

/// Attachments visible to an account: those on its apps and those of its add-ons.
pub(super) fn attachments_of_owner(
    conn: &Connection,
    account_id: &str,
) -> Result<Vec<AddonAttachment>> {
    all_rows(
        conn,
        &format!(
            "{SELECT_ATTACHMENT} WHERE p.id IN ({v}) OR o.id IN ({v}) ORDER BY t.created_at, t.name",
            v = super::tenancy::VISIBLE_APPS
        ),
        [account_id],
        attachment_from_row,
        "listing attachments",
    )
}

pub(super) fn attachment(conn: &Connection, id: &str) -> Result<AddonAttachment> {
    one_row(
        conn,
        &format!("{SELECT_ATTACHMENT} WHERE t.id = ?1"),
        [id],
        attachment_from_row,
        "add-on attachment",
    )
}

/// The config vars an app's attachments own, each with the add-on that sets it.
pub(super) fn owned_vars(conn: &Connection, app_id: &str) -> Result<BTreeMap<String, String>> {
    let rows = all_rows(
        conn,
        "SELECT t.name, a.name, kiln_open('addons.config:' || a.id, a.config) FROM addon_attachments t JOIN addons a ON a.id = t.addon_id WHERE t.app_id = ?1",
        [app_id],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                string_map(r, 2)?,
            ))
        },
        "reading the app's add-on config vars",
    )?;
    Ok(rows
        .into_iter()
        .flat_map(|(att, addon, config)| {
            attachment_config(&att, &config)
                .into_keys()
                .map(move |k| (k, addon.clone()))
        })
        .collect())
}

/// The plans of an app's attachments, for a new release's `addon_plan_names`.
pub(super) fn plan_names(conn: &Connection, app_id: &str) -> Result<Vec<String>> {
    let mut names = all_rows(
        conn,
        "SELECT DISTINCT a.service || ':' || a.plan FROM addon_attachments t JOIN addons a ON a.id = t.addon_id WHERE t.app_id = ?1",
        [app_id],
        |r| r.get(0),
        "reading the app's add-on plans",
    )?;
    names.sort();
    Ok(names)
}

/// Appends the release that changes `app_id`'s config by `set` and `unset`, described as
/// `description`; the newest release's slug runs with it (pending when there is one).
fn append_config_release(
    conn: &Connection,
    app_id: &str,
    set: &BTreeMap<String, String>,
    unset: &[String],
    description: String,
    user_id: &str,
) -> Result<Release> {
    let app = apps::get(conn, app_id)?;
    let mut config: ConfigVars = app.config.clone();
    for k in unset {
        config.remove(k);
    }
    config.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
    let newest_slug: Option<String> = conn
        .query_row(
            "SELECT slug_id FROM releases WHERE app_id = ?1 ORDER BY version DESC LIMIT 1",
            [&app.id],
            |r| r.get(0),
        )
        .optional()
        .ctx("reading the newest release's slug")?
        .flatten();
    let status = if newest_slug.is_some() {
        ReleaseStatus::Pending
    } else {
        ReleaseStatus::Succeeded
    };
    releases::insert(
        conn,
        &app.id,
        NewRelease {
            description,
            status,
            slug_id: newest_slug,
            config,
            user_id: user_id.to_string(),
        },
        Timestamp::now(),
    )
}

/// Inserts an attachment and appends its release. A name already used in the app, or a var
/// the app already has, is refused.
fn attach_in(
    conn: &Connection,
    addon: &Addon,
    app_id: &str,
    name: &str,
    namespace: Option<&str>,
    user_id: &str,
) -> Result<(AddonAttachment, Release)> {
    validate_attachment_name(name)?;
    let taken: Option<String> = conn
        .query_row(
            "SELECT a.name FROM addon_attachments t JOIN addons a ON a.id = t.addon_id WHERE t.app_id = ?1 AND t.name = ?2",
            params![app_id, name],
            |r| r.get(0),
        )
        .optional()
        .ctx("checking the attachment name")?;
    if let Some(other) = taken {
        return Err(StoreError::Conflict(format!(
            "The name {name} is already used by {other} on this app: choose another with --as"
        )));
    }
    let vars = attachment_config(name, &addon.config);
    let app = apps::get(conn, app_id)?;
    if let Some(k) = vars.keys().find(|k| app.config.contains_key(*k)) {
        return Err(StoreError::Conflict(format!(
            "The app already has a config var {k}: unset it, or attach with another name (--as)"
        )));
    }
    let id = new_id();
    let now = Timestamp::now();
    conn.execute(
        "INSERT INTO addon_attachments (id, addon_id, app_id, name, namespace, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![id, addon.id, app_id, name, namespace, now.0],
    )
    .ctx("inserting an attachment")?;
    let release = append_config_release(
        conn,
        app_id,
        &vars,
        &[],
        kiln_model::addon::attach_description(name, &addon.name),
        user_id,
    )?;
    Ok((attachment(conn, &id)?, release))
}

fn detach_in(conn: &Connection, att: &AddonAttachment, user_id: &str) -> Result<Release> {
    let addon = get(conn, &att.addon_id)?;
    let vars: Vec<String> = attachment_config(&att.name, &addon.config)
        .into_keys()
        .collect();
    conn.execute("DELETE FROM addon_attachments WHERE id = ?1", [&att.id])
        .ctx("deleting an attachment")?;
    append_config_release(
        conn,
        &att.app_id,
        &BTreeMap::new(),
        &vars,
        kiln_model::addon::detach_description(&att.name, &addon.name),
        user_id,
    )
}

/// Records a provisioned add-on and attaches it to its app as `attachment_name`.
pub(super) fn create(
    conn: &Connection,
    new: &NewAddon,
    attachment_name: &str,
    user_id: &str,
) -> Result<(Addon, AddonAttachment, Release)> {
    new.validate()?;
    require_account(conn, user_id)?;
    let app_id = resolve_app(conn, &new.app_id)?;
    let exists: Option<String> = conn
        .query_row("SELECT id FROM addons WHERE name = ?1", [&new.name], |r| {
            r.get(0)
        })
        .optional()
        .ctx("checking the add-on name")?;
    if exists.is_some() {
        return Err(StoreError::Conflict(format!(
            "The name {} is already taken by another add-on",
            new.name
        )));
    }
    let now = Timestamp::now();
    conn.execute(
        "INSERT INTO addons (id, name, app_id, service, plan, state, config, provision_message, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'provisioned', kiln_seal('addons.config:' || ?1, ?6), ?7, ?8, ?8)",
        params![new.id, new.name, app_id, new.service, new.plan, map_json(&new.config), new.provision_message, now.0],
    )
    .ctx("inserting an add-on")?;
    let addon = get(conn, &new.id)?;
    let (att, release) = attach_in(conn, &addon, &app_id, attachment_name, None, user_id)?;
    Ok((addon, att, release))
}

pub(super) fn attach(
    conn: &Connection,
    addon_id: &str,
    app: &str,
    name: &str,
    namespace: Option<&str>,
    user_id: &str,
) -> Result<(AddonAttachment, Release)> {
    require_account(conn, user_id)?;
    let addon = get(conn, addon_id)?;
    let app_id = resolve_app(conn, app)?;
    attach_in(conn, &addon, &app_id, name, namespace, user_id)
}

pub(super) fn detach(
    conn: &Connection,
    attachment_id: &str,
    user_id: &str,
) -> Result<(AddonAttachment, Release)> {
    require_account(conn, user_id)?;
    let att = attachment(conn, attachment_id)?;
    let release = detach_in(conn, &att, user_id)?;
    Ok((att, release))
}

/// Detaches an add-on everywhere (one release per app) and deletes it.
pub(super) fn destroy(
    conn: &Connection,
    addon_id: &str,
    user_id: &str,
) -> Result<(Addon, Vec<Release>)> {
    require_account(conn, user_id)?;
    let addon = get(conn, addon_id)?;
    let mut out = Vec::new();
    for att in attachments_of_addon(conn, &addon.id)? {
        out.push(detach_in(conn, &att, user_id)?);
    }
    conn.execute("DELETE FROM addons WHERE id = ?1", [&addon.id])
        .ctx("deleting an add-on")?;
    Ok((
        Addon {
            state: AddonState::Deprovisioned,
            ..addon
        },
        out,
    ))
}

/// Records a new plan (and the provider's config, which may have changed), appending a
/// release to every app the add-on is attached to.
pub(super) fn change_plan(
    conn: &Connection,
    addon_id: &str,
    plan: &str,
    config: &BTreeMap<String, String>,
    message: &str,
    user_id: &str,
) -> Result<(Addon, Vec<Release>)> {
    let addon = get(conn, addon_id)?;
    let plan_ref = kiln_model::addon::PlanRef::parse(&format!("{}:{plan}", addon.service))?;
    let description = kiln_model::addon::upgrade_description(&addon.name, &plan_ref);
    reconfigure(
        conn,
        &addon,
        plan,
        config,
        message,
        |_| description.clone(),
        user_id,
    )
}

/// Records new credentials: each attached app gets them in a release ("Update DATABASE by
/// heroku-postgresql", as Heroku words a rotation).
pub(super) fn rotate(
    conn: &Connection,
    addon_id: &str,
    config: &BTreeMap<String, String>,
    user_id: &str,
) -> Result<(Addon, Vec<Release>)> {
    let addon = get(conn, addon_id)?;
    let service = addon.service.clone();
    let (plan, message) = (addon.plan.clone(), addon.provision_message.clone());
    reconfigure(
        conn,
        &addon,
        &plan,
        config,
        &message,
        |att| format!("Update {} by {service}", att.name),
        user_id,
    )
}

fn reconfigure(
    conn: &Connection,
    addon: &Addon,
    plan: &str,
    config: &BTreeMap<String, String>,
    message: &str,
    describe: impl Fn(&AddonAttachment) -> String,
    user_id: &str,
) -> Result<(Addon, Vec<Release>)> {
    require_account(conn, user_id)?;
    NewAddon {
        id: addon.id.clone(),
        name: addon.name.clone(),
        app_id: addon.app_id.clone(),
        service: addon.service.clone(),
        plan: plan.to_string(),
        config: config.clone(),
        provision_message: message.to_string(),
    }
    .validate()?;
    conn.execute(
        "UPDATE addons SET plan = ?2, config = kiln_seal('addons.config:' || ?1, ?3), provision_message = ?4, updated_at = ?5 WHERE id = ?1",
        params![addon.id, plan, map_json(config), message, Timestamp::now().0],
    )
    .ctx("updating an add-on")?;
    let updated = get(conn, &addon.id)?;
    let mut out = Vec::new();
    for att in attachments_of_addon(conn, &addon.id)? {
        let old: Vec<String> = attachment_config(&att.name, &addon.config)
            .into_keys()
            .collect();
        out.push(append_config_release(
            conn,
            &att.app_id,
            &attachment_config(&att.name, config),
            &old,
            describe(&att),
            user_id,
        )?);
    }
    Ok((updated, out))
}
