//! The Platform API's JSON objects, shaped as Heroku's schema describes them (plus the few
//! fields the real CLI reads that the schema lacks, such as `create_status`).

use kiln_model::dyno::DynoInfo;
use kiln_model::records::{Account, App, Build, FormationEntry, Release};
use kiln_model::{DynoSize, Timestamp};
use kiln_platform::Platform;
use serde_json::{Value, json};

/// Kiln runs in one place; this is its region.
pub const REGION_ID: &str = "7e3b2a1c-0000-4000-8000-000000000001";
const STACK_ID: &str = "7e3b2a1c-0000-4000-8000-000000000002";
pub const GENERATION_ID: &str = "7e3b2a1c-0000-4000-8000-000000000003";

/// A stable id for each dyno size (the schema's `dyno_size.id` is a uuid, never null).
fn dyno_size_id(size: &str) -> Value {
    let Ok(s) = DynoSize::parse(size) else {
        return Value::Null;
    };
    let i = DynoSize::ALL.iter().position(|x| *x == s).unwrap_or(0);
    json!(format!("7e3b2a1c-0000-4000-8000-0000000001{i:02}"))
}

pub fn account(a: &Account) -> Value {
    json!({
        "id": a.id,
        "email": a.email,
        "name": a.name,
        "verified": true,
        "two_factor_authentication": false,
        "beta": false,
        "allow_tracking": false,
        "federated": false,
        "default_organization": null,
        "default_team": null,
        "identity_provider": null,
        "last_login": null,
        "sms_number": null,
        "suspended_at": null,
        "delinquent_at": null,
        "country_of_residence": null,
        "created_at": a.created_at.rfc3339(),
        "updated_at": a.updated_at.rfc3339(),
    })
}

pub fn stack(name: &str) -> Value {
    json!({ "id": STACK_ID, "name": name })
}

pub fn app(p: &Platform, a: &App, slug_size: Option<u64>, buildpack_desc: Option<&str>) -> Value {
    json!({
        "id": a.id,
        "name": a.name,
        "acm": a.acm,
        "archived_at": null,
        "buildpack_provided_description": buildpack_desc,
        "build_stack": stack(&a.stack),
        "stack": stack(&a.stack),
        "created_at": a.created_at.rfc3339(),
        "updated_at": a.updated_at.rfc3339(),
        "released_at": a.released_at.map(|t| t.rfc3339()),
        "git_url": p.git_url(&a.name),
        "web_url": p.web_url(&a.name),
        "maintenance": a.maintenance,
        // A team app's owner is the team, as the `heroku` CLI reads it: `<team>@herokumanager.com`
        // (`apps`, `apps:transfer`), and `team` set (`access*`).
        "owner": match &a.team {
            Some(t) => json!({ "id": t.id, "email": kiln_model::access::team_owner_email(&t.name) }),
            None => json!({ "id": a.owner_id, "email": a.owner_email }),
        },
        "organization": a.team.as_ref().map(|t| json!({ "id": t.id, "name": t.name })),
        "team": a.team.as_ref().map(|t| json!({ "id": t.id, "name": t.name })),
        "space": null,
        "region": { "id": REGION_ID, "name": "local" },
        "repo_size": null,
        "slug_size": slug_size,
        "internal_routing": false,
        "generation": { "id": GENERATION_ID, "name": "cedar" },
        "create_status": "complete",
        "locked": false,
        "process_tier": "production",
    })
}

/// A release; `base` is the API's URL as the client reached it (for `output_stream_url`,
/// which the CLI reads without credentials: the release's id is the capability, as a build's).
pub fn release(base: &str, a: &App, r: &Release, current_id: Option<&str>) -> Value {
    let succeeded = r.status == kiln_model::release::ReleaseStatus::Succeeded;
    json!({
        "id": r.id,
        "version": r.version,
        "description": r.description,
        "status": r.status.as_str(),
        "status_reason": r.status_reason,
        "current": current_id == Some(r.id.as_str()),
        "eligible_for_rollback": succeeded && r.slug_id.is_some(),
        "user": { "id": r.user_id, "email": r.user_email },
        "app": { "id": a.id, "name": a.name },
        "slug": r.slug_id.as_ref().map(|id| json!({ "id": id })),
        "addon_plan_names": r.addon_plan_names,
        "artifacts": [],
        "output_stream_url": r.has_output.then(|| format!("{base}/release-output/{}", r.id)),
        "created_at": r.created_at.rfc3339(),
        "updated_at": r.updated_at.rfc3339(),
    })
}

pub fn formation(a: &App, f: &FormationEntry, command: &str) -> Value {
    json!({
        "id": f.id,
        "type": f.process_type,
        "quantity": f.quantity,
        "size": f.size,
        "dyno_size": { "id": dyno_size_id(&f.size), "name": f.size },
        "command": command,
        "app": { "id": a.id, "name": a.name },
        "created_at": f.created_at.rfc3339(),
        "updated_at": f.updated_at.rfc3339(),
    })
}

pub fn dyno(a: &App, d: &DynoInfo) -> Value {
    json!({
        "id": d.id,
        "name": d.name,
        "type": d.process_type,
        "state": d.state.as_str(),
        "command": d.command,
        "size": d.size.name(),
        "attach_url": null,
        "release": { "id": d.release_id, "version": d.release_version },
        // Kiln's addition: why a dyno is crashed and when it is tried again.
        "state_detail": d.detail,
        "app": { "id": a.id, "name": a.name },
        "created_at": d.created_at.rfc3339(),
        "updated_at": d.updated_at.rfc3339(),
    })
}

pub fn build(base_url: &str, a: &App, b: &Build) -> Value {
    json!({
        "id": b.id,
        "status": b.status.as_str(),
        "output_stream_url": format!("{base_url}/build-output/{}", b.id),
        // Builds come from `git push`, not a tarball: the source's location is the app's repo.
        "source_blob": { "url": format!("{base_url}/{}.git", a.name), "checksum": null, "version": b.source_version, "version_description": null },
        "buildpacks": if b.buildpacks.is_empty() { Value::Null } else { json!(b.buildpacks.iter().map(|u| json!({ "url": u, "name": u })).collect::<Vec<_>>()) },
        "slug": b.slug_id.as_ref().map(|id| json!({ "id": id })),
        "release": b.release_id.as_ref().map(|id| json!({ "id": id })),
        "stack": a.stack,
        "generation": "cedar",
        "user": { "id": b.user_id, "email": b.user_email },
        "app": { "id": a.id },
        "created_at": b.created_at.rfc3339(),
        "updated_at": b.updated_at.rfc3339(),
    })
}

/// A domain: the app's default hostname (kind `heroku`, no `cname`) or a custom one (kind
/// `custom`, `cname` the hostname to point it at). `acm_status` is filled in by the caller
/// when ACM manages the domain.
pub fn domain(
    a: &App,
    id: &str,
    hostname: &str,
    kind: &str,
    cname: Option<&str>,
    created_at: Timestamp,
    updated_at: Timestamp,
) -> Value {
    json!({
        "id": id,
        "hostname": hostname,
        "kind": kind,
        "cname": cname,
        "status": "succeeded",
        "acm_status": null,
        "acm_status_reason": null,
        "sni_endpoint": null,
        "app": { "id": a.id, "name": a.name },
        "created_at": created_at.rfc3339(),
        "updated_at": updated_at.rfc3339(),
    })
}
