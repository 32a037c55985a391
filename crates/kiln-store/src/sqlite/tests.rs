//! The store's behaviour through the [`Store`] trait, on SQLite: what any backend must do.

use super::accounts::hash_api_key;
use super::common::new_id;
use super::*;
use crate::{AccessFacts, TransferState};
use kiln_model::Timestamp;
use kiln_model::config;
use kiln_model::records::FIRST_APP_UID;
use kiln_model::records::limits::SHORT_TEXT as MAX_SHORT_TEXT;
use kiln_testkit::TempDir;
use std::path::PathBuf;
use std::sync::Arc;

/// One master key for the tests that reopen a database file.
fn test_key() -> MasterKey {
    MasterKey::from_hex(&"7e".repeat(32)).unwrap()
}

/// The database file in a test's own directory.
fn db(dir: &TempDir) -> PathBuf {
    dir.join("kiln.db")
}

fn store() -> (SqliteStore, Account) {
    let s = SqliteStore::open_in_memory().unwrap();
    let a = s.ensure_account("owner@example.com", "Owner").unwrap();
    (s, a)
}

fn patch(items: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
        .collect()
}

fn all() -> ReleaseRange {
    ReleaseRange {
        first: None,
        last: None,
        max: 1000,
        descending: false,
    }
}

fn new_release(
    user: &Account,
    status: ReleaseStatus,
    slug: Option<&str>,
    config: &[(&str, &str)],
) -> NewRelease {
    NewRelease {
        description: "Deploy abc123".into(),
        status,
        slug_id: slug.map(str::to_string),
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        user_id: user.id.clone(),
    }
}

fn slug_for(app: &App) -> Slug {
    Slug {
        id: new_id(),
        app_id: app.id.clone(),
        checksum: format!("SHA256:{}", "ab".repeat(32)),
        size: 1234,
        process_types: [("web".to_string(), "python app.py".to_string())].into(),
        commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
        commit_description: Some("fix things".into()),
        stack: "heroku-24".into(),
        buildpack_provided_description: Some("Python".into()),
        created_at: Timestamp::now(),
    }
}

/// Every row of every table, for "nothing changed" checks.
fn dump(s: &SqliteStore) -> String {
    let conn = s.lock();
    let mut out = String::new();
    for table in [
        "accounts",
        "authorizations",
        "counters",
        "apps",
        "slugs",
        "releases",
        "builds",
        "formation",
        "buildpacks",
    ] {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY rowid"))
            .unwrap();
        let n = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                (0..n)
                    .map(|i| r.get::<_, rusqlite::types::Value>(i))
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .unwrap();
        for row in rows {
            out.push_str(&format!("{table}: {:?}\n", row.unwrap()));
        }
    }
    out
}

fn versions(s: &SqliteStore, app: &str) -> Vec<u32> {
    s.releases(app, all())
        .unwrap()
        .iter()
        .map(|r| r.version)
        .collect()
}

#[test]
fn create_app_appends_the_initial_release() {
    let (s, owner) = store();
    let (app, v1) = s.create_app("my-app", &owner.id, "heroku-24").unwrap();
    assert_eq!(app.name, "my-app");
    assert_eq!(app.owner_email, "owner@example.com");
    assert_eq!(app.uid, FIRST_APP_UID);
    assert!(app.config.is_empty());
    assert!(!app.maintenance);
    assert_eq!(app.released_at, Some(v1.created_at));
    assert_eq!(v1.version, 1);
    assert_eq!(v1.description, "Initial release");
    assert_eq!(v1.status, ReleaseStatus::Succeeded);
    assert_eq!(v1.slug_id, None);
    assert_eq!(v1.user_email, "owner@example.com");
    assert!(uuid::Uuid::parse_str(&app.id).is_ok());
    assert_eq!(s.app(&app.id).unwrap(), app);
    assert_eq!(s.app("my-app").unwrap(), app);
    assert_eq!(s.current_release("my-app").unwrap(), Some(v1));
    assert!(matches!(
        s.app("nope"),
        Err(StoreError::NotFound { resource: "app" })
    ));
}

#[test]
fn duplicate_and_bad_names_are_refused_and_change_nothing() {
    let (s, owner) = store();
    s.create_app("foo", &owner.id, "heroku-24").unwrap();
    let before = dump(&s);
    match s.create_app("foo", &owner.id, "heroku-24") {
        Err(StoreError::Conflict(msg)) => assert_eq!(msg, "Name foo is already taken"),
        other => panic!("{other:?}"),
    }
    for bad in [
        "",
        "Foo",
        "ab",
        "foo bar",
        "x'; DROP TABLE apps;--",
        "../etc",
        &"a".repeat(10_000),
    ] {
        match s.create_app(bad, &owner.id, "heroku-24") {
            Err(StoreError::Invalid(e)) => assert_eq!(e.field, "name"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    assert!(matches!(
        s.create_app("bar", "no-such-account", "heroku-24"),
        Err(StoreError::NotFound {
            resource: "account"
        })
    ));
    assert!(matches!(
        s.create_app("bar", &owner.id, "heroku; rm -rf /"),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(dump(&s), before);
    assert_eq!(s.apps().unwrap().len(), 1);
}

#[test]
fn uids_are_unique_and_never_reused() {
    let (s, owner) = store();
    let (a, _) = s.create_app("app-a", &owner.id, "heroku-24").unwrap();
    let (b, _) = s.create_app("app-b", &owner.id, "heroku-24").unwrap();
    assert_eq!((a.uid, b.uid), (20_000, 20_001));
    s.delete_app(&b.id).unwrap();
    s.delete_app("app-a").unwrap();
    let (c, _) = s.create_app("app-b", &owner.id, "heroku-24").unwrap();
    assert_eq!(c.uid, 20_002, "a deleted app's uid must not come back");
    assert_ne!(c.id, b.id);
    assert_eq!(
        versions(&s, &c.id),
        vec![1],
        "the new app's ledger starts afresh"
    );
}

#[test]
fn config_patch_appends_exactly_one_release() {
    let (s, owner) = store();
    let (app, _) = s.create_app("cfg-app", &owner.id, "heroku-24").unwrap();

    let (cfg, rel) = s
        .update_config(
            &app.id,
            &patch(&[("FOO", Some("1")), ("BAR", Some("2"))]),
            &owner.id,
        )
        .unwrap();
    let rel = rel.unwrap();
    assert_eq!(cfg.get("FOO").map(String::as_str), Some("1"));
    assert_eq!(rel.version, 2);
    assert_eq!(rel.description, "Set BAR, FOO config vars");
    assert_eq!(rel.status, ReleaseStatus::Succeeded);
    assert_eq!(rel.config, cfg);
    assert_eq!(s.app(&app.id).unwrap().config, cfg);
    assert_eq!(versions(&s, &app.id), vec![1, 2]);

    // The same values again and the removal of an absent var change nothing.
    let before = dump(&s);
    let (same, none) = s
        .update_config(
            "cfg-app",
            &patch(&[("FOO", Some("1")), ("NOPE", None)]),
            &owner.id,
        )
        .unwrap();
    assert!(none.is_none());
    assert_eq!(same, cfg);
    let (same, none) = s
        .update_config("cfg-app", &BTreeMap::new(), &owner.id)
        .unwrap();
    assert!(none.is_none());
    assert_eq!(same, cfg);
    assert_eq!(dump(&s), before);

    let (cfg, rel) = s
        .update_config(
            "cfg-app",
            &patch(&[("FOO", None), ("BAZ", Some("3"))]),
            &owner.id,
        )
        .unwrap();
    assert_eq!(
        rel.unwrap().description,
        "Set BAZ and remove FOO config vars"
    );
    assert!(!cfg.contains_key("FOO"));
    assert_eq!(versions(&s, &app.id), vec![1, 2, 3]);
}

#[test]
fn the_largest_valid_patch_is_accepted() {
    let (s, owner) = store();
    let (app, _) = s.create_app("big-patch", &owner.id, "heroku-24").unwrap();
    // As many short names as the 32 kB budget allows: the longest description a change can have.
    let alphabet: Vec<char> = ('A'..='Z').collect();
    let mut big = BTreeMap::new();
    'outer: for a in &alphabet {
        for b in &alphabet {
            for c in &alphabet {
                if big.len() * 3 + 3 > config::MAX_TOTAL_BYTES {
                    break 'outer;
                }
                big.insert(format!("{a}{b}{c}"), Some(String::new()));
            }
        }
    }
    let (cfg, rel) = s.update_config(&app.id, &big, &owner.id).unwrap();
    assert_eq!(cfg.len(), big.len());
    assert_eq!(rel.unwrap().version, 2);
}

#[test]
fn config_release_keeps_the_newest_slug() {
    let (s, owner) = store();
    let (app, _) = s.create_app("slug-app", &owner.id, "heroku-24").unwrap();
    let slug = slug_for(&app);
    s.insert_slug(&slug).unwrap();
    // The newest release is pending (a deploy in its release phase); its slug still counts.
    s.append_release(
        &app.id,
        new_release(&owner, ReleaseStatus::Pending, Some(&slug.id), &[]),
    )
    .unwrap();
    let (_, rel) = s
        .update_config(&app.id, &patch(&[("A", Some("1"))]), &owner.id)
        .unwrap();
    assert_eq!(rel.unwrap().slug_id.as_deref(), Some(slug.id.as_str()));
}

#[test]
fn a_bad_patch_changes_nothing() {
    let (s, owner) = store();
    let (app, _) = s.create_app("bad-patch", &owner.id, "heroku-24").unwrap();
    s.update_config(&app.id, &patch(&[("KEEP", Some("me"))]), &owner.id)
        .unwrap();
    let before = dump(&s);
    let huge = "x".repeat(config::MAX_TOTAL_BYTES + 1);
    for bad in [
        patch(&[("GOOD", Some("1")), ("BAD-KEY", Some("2"))]),
        patch(&[("GOOD", Some("1")), ("", Some("2"))]),
        patch(&[("X'); DELETE FROM releases;--", Some("1"))]),
        patch(&[("NUL", Some("a\0b"))]),
        patch(&[("HUGE", Some(&huge))]),
        patch(&[("KEEP", None), ("__RESERVED", Some("1"))]),
    ] {
        assert!(
            matches!(
                s.update_config(&app.id, &bad, &owner.id),
                Err(StoreError::Invalid(_))
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        s.update_config(&app.id, &patch(&[("A", Some("1"))]), "ghost"),
        Err(StoreError::NotFound {
            resource: "account"
        })
    ));
    assert!(matches!(
        s.update_config("ghost-app", &patch(&[("A", Some("1"))]), &owner.id),
        Err(StoreError::NotFound { resource: "app" })
    ));
    assert_eq!(dump(&s), before);
}

#[test]
fn append_release_numbers_and_sets_config() {
    let (s, owner) = store();
    let (app, _) = s.create_app("rel-app", &owner.id, "heroku-24").unwrap();
    let slug = slug_for(&app);
    s.insert_slug(&slug).unwrap();
    let r = s
        .append_release(
            &app.id,
            new_release(
                &owner,
                ReleaseStatus::Pending,
                Some(&slug.id),
                &[("A", "1")],
            ),
        )
        .unwrap();
    assert_eq!(r.version, 2);
    assert_eq!(r.status, ReleaseStatus::Pending);
    assert_eq!(r.user_email, owner.email);
    let now = s.app(&app.id).unwrap();
    assert_eq!(now.config, r.config);
    assert_eq!(now.released_at, Some(r.created_at));

    // A slug must exist and belong to the same app; the user must exist; config obeys the rules.
    let (other, _) = s.create_app("other-app", &owner.id, "heroku-24").unwrap();
    let before = dump(&s);
    assert!(matches!(
        s.append_release(
            &other.id,
            new_release(&owner, ReleaseStatus::Succeeded, Some(&slug.id), &[])
        ),
        Err(StoreError::NotFound { resource: "slug" })
    ));
    let mut ghost = new_release(&owner, ReleaseStatus::Succeeded, None, &[]);
    ghost.user_id = "ghost".into();
    assert!(matches!(
        s.append_release(&app.id, ghost),
        Err(StoreError::NotFound {
            resource: "account"
        })
    ));
    assert!(matches!(
        s.append_release(
            &app.id,
            new_release(&owner, ReleaseStatus::Succeeded, None, &[("1BAD", "x")])
        ),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.append_release(
            "ghost-app",
            new_release(&owner, ReleaseStatus::Succeeded, None, &[])
        ),
        Err(StoreError::NotFound { resource: "app" })
    ));
    assert_eq!(dump(&s), before);
}

#[test]
fn release_lookup_by_id_and_version() {
    let (s, owner) = store();
    let (app, _) = s.create_app("look-app", &owner.id, "heroku-24").unwrap();
    let (other, _) = s.create_app("look-other", &owner.id, "heroku-24").unwrap();
    s.append_release(
        &app.id,
        new_release(&owner, ReleaseStatus::Succeeded, None, &[]),
    )
    .unwrap();
    let v3 = s
        .append_release(
            &app.id,
            new_release(&owner, ReleaseStatus::Succeeded, None, &[]),
        )
        .unwrap();
    assert_eq!(v3.version, 3);
    assert_eq!(s.release(&app.id, &v3.id).unwrap(), v3);
    assert_eq!(s.release(&app.id, "3").unwrap(), v3);
    assert_eq!(s.release("look-app", "v3").unwrap(), v3);
    assert_eq!(
        s.release(&app.id, "1").unwrap().description,
        "Initial release"
    );
    for missing in [
        "4",
        "v4",
        "0",
        "v",
        "",
        "+3",
        "v+3",
        "-3",
        "99999999999999999999",
        "3 ",
        "' OR 1=1 --",
        &"9".repeat(100_000),
    ] {
        assert!(
            matches!(
                s.release(&app.id, missing),
                Err(StoreError::NotFound {
                    resource: "release"
                })
            ),
            "{missing:?}"
        );
    }
    // A release of another app is not found through this one.
    assert!(matches!(
        s.release(&other.id, &v3.id),
        Err(StoreError::NotFound {
            resource: "release"
        })
    ));
    assert!(matches!(
        s.release("ghost-app", "1"),
        Err(StoreError::NotFound { resource: "app" })
    ));
}

#[test]
fn release_ranges_order_and_max() {
    let (s, owner) = store();
    let (app, _) = s.create_app("range-app", &owner.id, "heroku-24").unwrap();
    for _ in 0..9 {
        s.append_release(
            &app.id,
            new_release(&owner, ReleaseStatus::Succeeded, None, &[]),
        )
        .unwrap();
    }
    let get = |first, last, max, descending| -> Vec<u32> {
        s.releases(
            &app.id,
            ReleaseRange {
                first,
                last,
                max,
                descending,
            },
        )
        .unwrap()
        .iter()
        .map(|r| r.version)
        .collect()
    };
    assert_eq!(get(None, None, 100, false), (1..=10).collect::<Vec<_>>());
    assert_eq!(
        get(None, None, 100, true),
        (1..=10).rev().collect::<Vec<_>>()
    );
    assert_eq!(get(None, None, 3, false), vec![1, 2, 3]);
    assert_eq!(get(None, None, 3, true), vec![10, 9, 8]);
    assert_eq!(get(Some(4), Some(6), 100, false), vec![4, 5, 6]);
    assert_eq!(get(Some(4), Some(8), 2, true), vec![8, 7]);
    assert_eq!(get(Some(8), None, 100, false), vec![8, 9, 10]);
    assert_eq!(get(None, Some(2), 100, true), vec![2, 1]);
    assert_eq!(get(Some(7), Some(3), 100, false), Vec::<u32>::new());
    assert_eq!(get(Some(11), None, 100, false), Vec::<u32>::new());
    assert_eq!(get(None, None, 0, false), Vec::<u32>::new());
    assert_eq!(
        get(Some(u32::MAX), Some(u32::MAX), u32::MAX, true),
        Vec::<u32>::new()
    );
}

#[test]
fn status_moves_only_from_pending() {
    let (s, owner) = store();
    let (app, v1) = s.create_app("status-app", &owner.id, "heroku-24").unwrap();
    let v2 = s
        .append_release(
            &app.id,
            new_release(&owner, ReleaseStatus::Pending, None, &[]),
        )
        .unwrap();
    // A pending release is not what should run yet.
    assert_eq!(s.current_release(&app.id).unwrap().unwrap().id, v1.id);

    let v2 = s
        .set_release_status(&v2.id, ReleaseStatus::Succeeded, None)
        .unwrap();
    assert_eq!(v2.status, ReleaseStatus::Succeeded);
    assert_eq!(s.current_release(&app.id).unwrap().unwrap().id, v2.id);

    let v3 = s
        .append_release(
            &app.id,
            new_release(&owner, ReleaseStatus::Pending, None, &[]),
        )
        .unwrap();
    let v3 = s
        .set_release_status(
            &v3.id,
            ReleaseStatus::Failed,
            Some("release command exited with status 1"),
        )
        .unwrap();
    assert_eq!(v3.status, ReleaseStatus::Failed);
    assert_eq!(
        v3.status_reason.as_deref(),
        Some("release command exited with status 1")
    );
    assert_eq!(
        s.current_release(&app.id).unwrap().unwrap().id,
        v2.id,
        "a failed release never becomes current"
    );

    let before = dump(&s);
    for (id, to) in [
        (&v2.id, ReleaseStatus::Failed),
        (&v2.id, ReleaseStatus::Pending),
        (&v3.id, ReleaseStatus::Succeeded),
        (&v1.id, ReleaseStatus::Succeeded),
    ] {
        assert!(
            matches!(
                s.set_release_status(id, to, None),
                Err(StoreError::Conflict(_))
            ),
            "{id} -> {to:?}"
        );
    }
    let v4 = s
        .append_release(
            &app.id,
            new_release(&owner, ReleaseStatus::Pending, None, &[]),
        )
        .unwrap();
    let before_v4 = dump(&s);
    match s.set_release_status(&v4.id, ReleaseStatus::Pending, None) {
        Err(StoreError::Conflict(msg)) => {
            assert_eq!(msg, "Release v4 is pending and cannot become pending")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.set_release_status("ghost", ReleaseStatus::Failed, None),
        Err(StoreError::NotFound {
            resource: "release"
        })
    ));
    assert_eq!(dump(&s), before_v4);
    assert_ne!(before, before_v4);
}

#[test]
fn the_ledger_cannot_be_rewritten_even_by_raw_sql() {
    let (s, owner) = store();
    let (app, v1) = s.create_app("ledger-app", &owner.id, "heroku-24").unwrap();
    let conn = s.lock();
    let err = conn
        .execute(
            "UPDATE releases SET config = '{\"A\":\"1\"}' WHERE id = ?1",
            [&v1.id],
        )
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    drop(conn);
    assert_eq!(s.release(&app.id, "1").unwrap(), v1);
}

#[test]
fn formation_ensure_and_update() {
    let (s, owner) = store();
    let (app, _) = s.create_app("form-app", &owner.id, "heroku-24").unwrap();
    assert!(s.formation(&app.id).unwrap().is_empty());
    let f = s
        .ensure_formation(
            &app.id,
            &[("web".to_string(), 1), ("worker".to_string(), 0)].into(),
        )
        .unwrap();
    assert_eq!(
        f.iter()
            .map(|e| (e.process_type.as_str(), e.quantity, e.size.as_str()))
            .collect::<Vec<_>>(),
        vec![("web", 1, "Standard-1X"), ("worker", 0, "Standard-1X")]
    );

    let f = s
        .update_formation(
            &app.id,
            &[("web".into(), Some(3), Some("standard-2x".into()))],
        )
        .unwrap();
    assert_eq!((f[0].quantity, f[0].size.as_str()), (3, "Standard-2X"));

    // Existing entries are left alone; new ones are added.
    let f = s
        .ensure_formation(
            "form-app",
            &[("web".to_string(), 1), ("clock".to_string(), 1)].into(),
        )
        .unwrap();
    assert_eq!(
        f.iter()
            .map(|e| (e.process_type.as_str(), e.quantity))
            .collect::<Vec<_>>(),
        vec![("clock", 1), ("web", 3), ("worker", 0)]
    );

    // All or nothing: one missing type and nothing changes.
    let before = dump(&s);
    assert!(matches!(
        s.update_formation(
            &app.id,
            &[
                ("web".into(), Some(5), None),
                ("missing".into(), Some(1), None)
            ]
        ),
        Err(StoreError::NotFound {
            resource: "formation"
        })
    ));
    assert!(matches!(
        s.update_formation(&app.id, &[("web".into(), None, Some("Mega-9000".into()))]),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.update_formation(&app.id, &[("we b'".into(), Some(1), None)]),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.ensure_formation(&app.id, &[("bad type".to_string(), 1)].into()),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.ensure_formation("ghost-app", &BTreeMap::new()),
        Err(StoreError::NotFound { resource: "app" })
    ));
    assert_eq!(dump(&s), before);

    let f = s
        .update_formation(
            &app.id,
            &[
                ("worker".into(), Some(2), None),
                ("clock".into(), None, Some("1x".into())),
            ],
        )
        .unwrap();
    assert_eq!(
        f.iter()
            .map(|e| (e.process_type.as_str(), e.quantity, e.size.as_str()))
            .collect::<Vec<_>>(),
        vec![
            ("clock", 1, "Standard-1X"),
            ("web", 3, "Standard-2X"),
            ("worker", 2, "Standard-1X")
        ]
    );
}

#[test]
fn listing_an_owners_apps_brings_their_current_slugs() {
    let (s, owner) = store();
    let other = s.ensure_account("other@kiln.local", "Other").unwrap();
    let (a, _) = s.create_app("list-b", &owner.id, "heroku-24").unwrap();
    let (b, _) = s.create_app("list-a", &owner.id, "heroku-24").unwrap();
    let (_theirs, _) = s.create_app("list-c", &other.id, "heroku-24").unwrap();
    let old = slug_for(&a);
    s.insert_slug(&old).unwrap();
    s.append_release(
        &a.id,
        new_release(&owner, ReleaseStatus::Succeeded, Some(&old.id), &[]),
    )
    .unwrap();
    let new = Slug {
        id: uuid::Uuid::new_v4().to_string(),
        checksum: format!("SHA256:{}", "b".repeat(64)),
        ..slug_for(&a)
    };
    s.insert_slug(&new).unwrap();
    s.append_release(
        &a.id,
        new_release(&owner, ReleaseStatus::Succeeded, Some(&new.id), &[]),
    )
    .unwrap();
    // A later release that failed is not current.
    let failed = Slug {
        id: uuid::Uuid::new_v4().to_string(),
        checksum: format!("SHA256:{}", "c".repeat(64)),
        ..slug_for(&a)
    };
    s.insert_slug(&failed).unwrap();
    s.append_release(
        &a.id,
        new_release(&owner, ReleaseStatus::Failed, Some(&failed.id), &[]),
    )
    .unwrap();
    let listed = s.apps_of(&owner.id).unwrap();
    let names: Vec<_> = listed
        .iter()
        .map(|(app, slug)| (app.name.as_str(), slug.as_ref().map(|s| s.id.clone())))
        .collect();
    assert_eq!(
        names,
        vec![("list-a", None), ("list-b", Some(new.id.clone()))]
    );
    assert_eq!(listed[0].0, b);
}

#[test]
fn builds_lifecycle_and_order() {
    let (s, owner) = store();
    let (app, _) = s.create_app("build-app", &owner.id, "heroku-24").unwrap();
    let packs = vec!["heroku/python".to_string()];
    let b1 = s
        .create_build(&app.id, &owner.id, Some("abc"), &packs)
        .unwrap();
    let b2 = s.create_build(&app.id, &owner.id, None, &[]).unwrap();
    let b3 = s
        .create_build(&app.id, &owner.id, Some("def"), &[])
        .unwrap();
    assert_eq!(b1.status, BuildStatus::Pending);
    assert_eq!(b1.buildpacks, packs);
    assert_eq!(b1.user_email, owner.email);
    let ids: Vec<_> = s
        .builds(&app.id)
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(ids, vec![b3.id.clone(), b2.id.clone(), b1.id.clone()]);

    let slug = slug_for(&app);
    s.insert_slug(&slug).unwrap();
    let rel = s
        .append_release(
            &app.id,
            new_release(&owner, ReleaseStatus::Succeeded, Some(&slug.id), &[]),
        )
        .unwrap();
    let done = s
        .finish_build(
            &b1.id,
            BuildStatus::Succeeded,
            "-----> Python app detected\n",
            Some(&slug.id),
            Some(&rel.id),
        )
        .unwrap();
    assert_eq!(done.status, BuildStatus::Succeeded);
    assert_eq!(done.slug_id.as_deref(), Some(slug.id.as_str()));
    assert_eq!(done.release_id.as_deref(), Some(rel.id.as_str()));
    assert_eq!(s.build("build-app", &b1.id).unwrap(), done);
    assert_eq!(
        s.build_by_id(&b1.id).unwrap(),
        done,
        "found by its id alone"
    );
    assert!(matches!(
        s.build_by_id("ghost"),
        Err(StoreError::NotFound { resource: "build" })
    ));
    assert!(matches!(
        s.finish_build(&b1.id, BuildStatus::Failed, "", None, None),
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.finish_build(&b2.id, BuildStatus::Pending, "", None, None),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.finish_build(&b2.id, BuildStatus::Failed, "", Some("ghost"), None),
        Err(StoreError::NotFound { resource: "slug" })
    ));
    assert!(matches!(
        s.finish_build(&b2.id, BuildStatus::Failed, "", None, Some("ghost")),
        Err(StoreError::NotFound {
            resource: "release"
        })
    ));
    assert!(matches!(
        s.finish_build("ghost", BuildStatus::Failed, "", None, None),
        Err(StoreError::NotFound { resource: "build" })
    ));

    // Interrupted builds: partial output keeps its lines and gets the reason last.
    {
        let conn = s.lock();
        conn.execute(
            "UPDATE builds SET output = 'half a line' WHERE id = ?1",
            [&b3.id],
        )
        .unwrap();
    }
    assert_eq!(
        s.fail_pending_builds("Build interrupted: the server restarted")
            .unwrap(),
        2
    );
    let b2 = s.build(&app.id, &b2.id).unwrap();
    let b3 = s.build(&app.id, &b3.id).unwrap();
    assert_eq!(
        (b2.status, b2.output.as_str()),
        (
            BuildStatus::Failed,
            "Build interrupted: the server restarted\n"
        )
    );
    assert_eq!(
        b3.output,
        "half a line\nBuild interrupted: the server restarted\n"
    );
    assert_eq!(
        s.build(&app.id, &b1.id).unwrap(),
        done,
        "finished builds are untouched"
    );
    assert_eq!(s.fail_pending_builds("again").unwrap(), 0);

    let (other, _) = s.create_app("build-other", &owner.id, "heroku-24").unwrap();
    assert!(matches!(
        s.build(&other.id, &b1.id),
        Err(StoreError::NotFound { resource: "build" })
    ));
    assert!(matches!(
        s.create_build(&app.id, &owner.id, None, &["not a buildpack".into()]),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.create_build(&app.id, "ghost", None, &[]),
        Err(StoreError::NotFound {
            resource: "account"
        })
    ));
}

#[test]
fn slugs_are_checked_and_stored() {
    let (s, owner) = store();
    let (app, _) = s.create_app("slug-store", &owner.id, "heroku-24").unwrap();
    let slug = slug_for(&app);
    s.insert_slug(&slug).unwrap();
    assert_eq!(s.slug(&slug.id).unwrap(), slug);
    assert!(matches!(s.insert_slug(&slug), Err(StoreError::Conflict(_))));
    assert!(matches!(
        s.slug("ghost"),
        Err(StoreError::NotFound { resource: "slug" })
    ));

    let before = dump(&s);
    let mut bad = Vec::new();
    for checksum in [
        "",
        "SHA256:../../etc/passwd",
        "sha256:abc",
        &format!("SHA256:{}", "g".repeat(64)),
    ] {
        bad.push(Slug {
            id: new_id(),
            checksum: checksum.to_string(),
            ..slug.clone()
        });
    }
    bad.push(Slug {
        id: "../../x".into(),
        ..slug.clone()
    });
    bad.push(Slug {
        id: slug.id.to_uppercase(),
        ..slug.clone()
    });
    bad.push(Slug {
        id: new_id(),
        size: u64::MAX,
        ..slug.clone()
    });
    bad.push(Slug {
        id: new_id(),
        process_types: [("we b".to_string(), "x".to_string())].into(),
        ..slug.clone()
    });
    bad.push(Slug {
        id: new_id(),
        commit: Some("x".repeat(MAX_SHORT_TEXT + 1)),
        ..slug.clone()
    });
    for b in bad {
        assert!(
            matches!(s.insert_slug(&b), Err(StoreError::Invalid(_))),
            "{b:?}"
        );
    }
    assert!(matches!(
        s.insert_slug(&Slug {
            id: new_id(),
            app_id: "ghost".into(),
            ..slug.clone()
        }),
        Err(StoreError::NotFound { resource: "app" })
    ));
    assert_eq!(dump(&s), before);
}

#[test]
fn accounts_and_api_keys() {
    let (s, owner) = store();
    assert_eq!(
        s.ensure_account("OWNER@example.com", "Someone else")
            .unwrap(),
        owner,
        "emails match case-insensitively"
    );
    assert_eq!(s.account(&owner.id).unwrap(), owner);
    assert!(matches!(
        s.account("ghost"),
        Err(StoreError::NotFound {
            resource: "account"
        })
    ));

    s.add_api_key(&owner.id, "secret-key-1", "bootstrap")
        .unwrap();
    s.add_api_key(&owner.id, "secret-key-1", "bootstrap again")
        .unwrap();
    let (found, auth) = s.account_by_api_key("secret-key-1").unwrap().unwrap();
    assert_eq!(found, owner);
    assert_eq!(auth.description, "bootstrap again");
    assert_eq!(auth.scope, ["global"]);
    assert_eq!(s.account_by_api_key("secret-key-2").unwrap(), None);
    assert_eq!(s.account_by_api_key("").unwrap(), None);
    assert_eq!(s.account_by_api_key("' OR '1'='1").unwrap(), None);

    // Only the hash is on disk.
    let stored: Vec<String> = {
        let conn = s.lock();
        let mut stmt = conn
            .prepare("SELECT token_sha256 FROM authorizations")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    };
    assert_eq!(stored, vec![hash_api_key("secret-key-1")]);
    assert_eq!(stored[0].len(), 64);
    assert!(!dump(&s).contains("secret-key-1"));
    // SHA-256("abc"), the FIPS 180-2 test vector.
    assert_eq!(
        hash_api_key("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );

    let other = s.ensure_account("other@example.com", "").unwrap();
    let before = dump(&s);
    assert!(matches!(
        s.add_api_key(&other.id, "secret-key-1", ""),
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.add_api_key("ghost", "secret-key-9", ""),
        Err(StoreError::NotFound {
            resource: "account"
        })
    ));
    assert!(matches!(
        s.add_api_key(&other.id, "", ""),
        Err(StoreError::Invalid(_))
    ));
    for bad in [
        "",
        "no-at-sign",
        "a b@example.com",
        "x@y\n",
        &format!("{}@example.com", "a".repeat(300)),
    ] {
        assert!(
            matches!(s.ensure_account(bad, "x"), Err(StoreError::Invalid(_))),
            "{bad:?}"
        );
    }
    assert!(matches!(
        s.ensure_account("n@example.com", &"n".repeat(MAX_SHORT_TEXT + 1)),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(dump(&s), before);
}

#[test]
fn maintenance_and_buildpacks() {
    let (s, owner) = store();
    let (app, _) = s.create_app("misc-app", &owner.id, "heroku-24").unwrap();
    assert!(s.set_maintenance("misc-app", true).unwrap().maintenance);
    assert!(!s.set_maintenance(&app.id, false).unwrap().maintenance);
    assert!(matches!(
        s.set_maintenance("ghost-app", true),
        Err(StoreError::NotFound { resource: "app" })
    ));

    assert!(s.buildpacks(&app.id).unwrap().is_empty());
    let packs = vec![
        "heroku/nodejs".to_string(),
        "https://github.com/heroku/heroku-buildpack-python#v1".to_string(),
    ];
    s.set_buildpacks(&app.id, &packs).unwrap();
    assert_eq!(s.buildpacks("misc-app").unwrap(), packs);
    let before = dump(&s);
    assert!(matches!(
        s.set_buildpacks(
            &app.id,
            &["heroku/ruby".into(), "--upload-pack=evil".into()]
        ),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(dump(&s), before);
    s.set_buildpacks(&app.id, &[]).unwrap();
    assert!(s.buildpacks(&app.id).unwrap().is_empty());
}

#[test]
fn delete_app_removes_everything_it_owns() {
    let (s, owner) = store();
    let (keep, _) = s.create_app("keep-app", &owner.id, "heroku-24").unwrap();
    s.update_config(&keep.id, &patch(&[("A", Some("1"))]), &owner.id)
        .unwrap();
    let kept = dump(&s);

    let (app, _) = s.create_app("doomed", &owner.id, "heroku-24").unwrap();
    let slug = slug_for(&app);
    s.insert_slug(&slug).unwrap();
    let rel = s
        .append_release(
            &app.id,
            new_release(
                &owner,
                ReleaseStatus::Succeeded,
                Some(&slug.id),
                &[("X", "y")],
            ),
        )
        .unwrap();
    let b = s.create_build(&app.id, &owner.id, None, &[]).unwrap();
    s.finish_build(
        &b.id,
        BuildStatus::Succeeded,
        "ok\n",
        Some(&slug.id),
        Some(&rel.id),
    )
    .unwrap();
    s.create_build(&app.id, &owner.id, None, &[]).unwrap();
    s.ensure_formation(&app.id, &[("web".to_string(), 1)].into())
        .unwrap();
    s.set_buildpacks(&app.id, &["heroku/python".into()])
        .unwrap();

    s.delete_app("doomed").unwrap();
    assert!(matches!(
        s.app("doomed"),
        Err(StoreError::NotFound { resource: "app" })
    ));
    assert!(matches!(
        s.slug(&slug.id),
        Err(StoreError::NotFound { resource: "slug" })
    ));
    assert!(matches!(
        s.delete_app(&app.id),
        Err(StoreError::NotFound { resource: "app" })
    ));
    // Only the uid counter remembers the deleted app.
    let counter_line = |d: &str| {
        d.lines()
            .filter(|l| !l.starts_with("counters:"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(counter_line(&dump(&s)), counter_line(&kept));
}

#[test]
fn corrupt_rows_are_errors_not_panics() {
    let (s, owner) = store();
    let (app, _) = s.create_app("corrupt-app", &owner.id, "heroku-24").unwrap();
    // A value stored in clear (not by Kiln) is refused, not trusted.
    s.lock()
        .execute("UPDATE apps SET config = '{}' WHERE id = ?1", [&app.id])
        .unwrap();
    match s.app(&app.id) {
        Err(StoreError::Db(msg)) => assert!(msg.contains("not sealed"), "{msg}"),
        other => panic!("{other:?}"),
    }
    // A sealed value that is not what it should be.
    s.lock()
        .execute(
            "UPDATE apps SET config = kiln_seal('apps.config:' || id, 'not json') WHERE id = ?1",
            [&app.id],
        )
        .unwrap();
    match s.app(&app.id) {
        Err(StoreError::Db(msg)) => assert!(msg.contains("JSON"), "{msg}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.update_config(&app.id, &patch(&[("A", Some("1"))]), &owner.id),
        Err(StoreError::Db(_))
    ));
}

#[test]
fn a_file_database_survives_reopening() {
    let dir = TempDir::new("store");
    let (app_id, owner_id) = {
        let s = SqliteStore::open(&db(&dir), &test_key()).unwrap();
        let owner = s.ensure_account("owner@example.com", "Owner").unwrap();
        s.add_api_key(&owner.id, "key", "").unwrap();
        let (app, _) = s.create_app("durable", &owner.id, "heroku-24").unwrap();
        s.update_config(&app.id, &patch(&[("A", Some("1"))]), &owner.id)
            .unwrap();
        s.ensure_formation(&app.id, &[("web".to_string(), 2)].into())
            .unwrap();
        s.delete_app(&s.create_app("gone", &owner.id, "heroku-24").unwrap().0.id)
            .unwrap();
        let mode: String = s
            .lock()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        (app.id, owner.id)
    };
    for _ in 0..2 {
        let s = SqliteStore::open(&db(&dir), &test_key()).unwrap();
        let version: i64 = s
            .lock()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        let fk: i64 = s
            .lock()
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
        let app = s.app("durable").unwrap();
        assert_eq!(app.id, app_id);
        assert_eq!(app.config.get("A").map(String::as_str), Some("1"));
        assert_eq!(versions(&s, &app_id), vec![1, 2]);
        assert_eq!(s.formation(&app_id).unwrap()[0].quantity, 2);
        assert_eq!(
            s.account_by_api_key("key").unwrap().map(|(a, _)| a.id),
            Some(owner_id.clone())
        );
        assert!(matches!(s.app("gone"), Err(StoreError::NotFound { .. })));
    }
    // The uid counter survived too: "gone" took 20001, so the next app gets 20002.
    let s = SqliteStore::open(&db(&dir), &test_key()).unwrap();
    assert_eq!(
        s.create_app("after", &owner_id, "heroku-24").unwrap().0.uid,
        20_002
    );
}

#[test]
fn a_database_from_a_newer_kiln_is_refused() {
    let dir = TempDir::new("store");
    drop(SqliteStore::open(&db(&dir), &test_key()).unwrap());
    {
        let conn = Connection::open(db(&dir)).unwrap();
        conn.pragma_update(None, "user_version", MIGRATIONS.len() as i64 + 1)
            .unwrap();
    }
    match SqliteStore::open(&db(&dir), &test_key()) {
        Err(StoreError::Db(msg)) => assert!(msg.contains("newer Kiln"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn concurrent_appends_make_a_gap_free_ledger() {
    let dir = TempDir::new("store");
    // Two stores on one file: threads contend both for the mutex and for SQLite's lock.
    let a = Arc::new(SqliteStore::open(&db(&dir), &test_key()).unwrap());
    let b = Arc::new(SqliteStore::open(&db(&dir), &test_key()).unwrap());
    let owner = a.ensure_account("owner@example.com", "Owner").unwrap();
    let (app, _) = a.create_app("busy-app", &owner.id, "heroku-24").unwrap();
    const THREADS: usize = 6;
    const EACH: usize = 20;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let s = if t % 2 == 0 {
                Arc::clone(&a)
            } else {
                Arc::clone(&b)
            };
            let owner = owner.clone();
            let app_id = app.id.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..EACH {
                    let value = format!("{t}-{i}");
                    let r = if i % 2 == 0 {
                        s.append_release(
                            &app_id,
                            new_release(&owner, ReleaseStatus::Succeeded, None, &[("T", &value)]),
                        )
                        .unwrap()
                    } else {
                        s.update_config(&app_id, &patch(&[("T", Some(&value))]), &owner.id)
                            .unwrap()
                            .1
                            .unwrap()
                    };
                    mine.push(r.version);
                }
                mine
            })
        })
        .collect();
    let mut seen: Vec<u32> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    seen.sort_unstable();
    let expected: Vec<u32> = (2..=(THREADS * EACH + 1) as u32).collect();
    assert_eq!(seen, expected, "every append got its own version");
    assert_eq!(
        versions(&a, &app.id),
        (1..=(THREADS * EACH + 1) as u32).collect::<Vec<_>>()
    );
    // The app's config is the newest release's config.
    let newest = a
        .releases(
            &app.id,
            ReleaseRange {
                first: None,
                last: None,
                max: 1,
                descending: true,
            },
        )
        .unwrap();
    assert_eq!(b.app(&app.id).unwrap().config, newest[0].config);
}

#[test]
fn huge_and_hostile_input_is_refused_and_changes_nothing() {
    let (s, owner) = store();
    let (app, _) = s.create_app("target", &owner.id, "heroku-24").unwrap();
    s.ensure_formation(&app.id, &[("web".to_string(), 1)].into())
        .unwrap();
    let before = dump(&s);
    let sqlish = "target'; DROP TABLE apps; --";
    let huge = "A".repeat(1 << 20);

    assert!(matches!(
        s.app(sqlish),
        Err(StoreError::NotFound { resource: "app" })
    ));
    assert!(matches!(
        s.app(&huge),
        Err(StoreError::NotFound { resource: "app" })
    ));
    assert!(matches!(
        s.delete_app(sqlish),
        Err(StoreError::NotFound { resource: "app" })
    ));
    assert!(matches!(
        s.delete_app("%"),
        Err(StoreError::NotFound { resource: "app" })
    ));
    assert!(matches!(
        s.create_app(sqlish, &owner.id, "heroku-24"),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.create_app("fine-name", &owner.id, &huge),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.update_config(&app.id, &patch(&[(&huge, Some("x"))]), &owner.id),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.update_config(&app.id, &patch(&[("BIG", Some(&huge))]), &owner.id),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.update_config(&app.id, &patch(&[(sqlish, Some("x"))]), &owner.id),
        Err(StoreError::Invalid(_))
    ));
    let mut big_release = new_release(&owner, ReleaseStatus::Succeeded, None, &[]);
    big_release.description = huge.clone();
    assert!(matches!(
        s.append_release(&app.id, big_release),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.release(&app.id, &huge),
        Err(StoreError::NotFound {
            resource: "release"
        })
    ));
    assert!(matches!(
        s.update_formation(&app.id, &[(huge.clone(), Some(1), None)]),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.update_formation(&app.id, &[("web".into(), Some(1), Some(huge.clone()))]),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.create_build(&app.id, &owner.id, Some(&huge), &[]),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.set_buildpacks(&app.id, std::slice::from_ref(&huge)),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.ensure_account(&huge, "x"),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.add_api_key(&owner.id, &huge, ""),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(s.account_by_api_key(&huge).unwrap(), None);
    assert!(matches!(
        s.fail_pending_builds(&huge),
        Err(StoreError::Invalid(_))
    ));
    // Error messages quote hostile input only in part.
    let Err(StoreError::Invalid(e)) = s.create_app("fine-name", &owner.id, &huge) else {
        panic!()
    };
    assert!(e.message.len() < 300, "{}", e.message.len());
    assert_eq!(dump(&s), before);
}

#[test]
fn a_panic_while_holding_the_lock_does_not_break_the_store() {
    let (s, owner) = store();
    let s = Arc::new(s);
    let s2 = Arc::clone(&s);
    let owner2 = owner.clone();
    let result = std::thread::spawn(move || {
        s2.write(|tx| {
            tx.execute(
                "UPDATE accounts SET name = 'half done' WHERE id = ?1",
                [&owner2.id],
            )
            .unwrap();
            panic!("boom");
            #[allow(unreachable_code)]
            Ok(())
        })
    })
    .join();
    assert!(result.is_err());
    assert_eq!(
        s.account(&owner.id).unwrap().name,
        "Owner",
        "the panicking transaction was rolled back"
    );
    s.create_app("still-works", &owner.id, "heroku-24").unwrap();
}

#[test]
fn addons_attach_through_releases_and_own_their_vars() {
    let (s, a) = store();
    let (app, _) = s.create_app("db-app", &a.id, "heroku-24").unwrap();
    let (other, _) = s.create_app("other-app", &a.id, "heroku-24").unwrap();
    let new = crate::NewAddon {
        id: new_id(),
        name: "postgresql-calm-00001".into(),
        app_id: app.id.clone(),
        service: "heroku-postgresql".into(),
        plan: "essential-0".into(),
        config: [("URL".to_string(), "postgres://u:p@h:1/d".to_string())].into(),
        provision_message: "ready".into(),
    };
    let (addon, att, rel) = s.create_addon(&new, "DATABASE", &a.id).unwrap();
    assert_eq!(
        (addon.app_name.as_str(), att.name.as_str()),
        ("db-app", "DATABASE")
    );
    assert_eq!(
        rel.description,
        "Attach DATABASE (@ref:postgresql-calm-00001)"
    );
    assert_eq!(rel.config["DATABASE_URL"], "postgres://u:p@h:1/d");
    assert_eq!(rel.addon_plan_names, ["heroku-postgresql:essential-0"]);
    assert_eq!(
        s.app("db-app").unwrap().config["DATABASE_URL"],
        "postgres://u:p@h:1/d"
    );
    // The add-on's var is the add-on's.
    for patch in [
        patch(&[("DATABASE_URL", Some("x"))]),
        patch(&[("DATABASE_URL", None)]),
    ] {
        let e = s
            .update_config(&app.id, &patch, &a.id)
            .unwrap_err()
            .to_string();
        assert!(e.contains("postgresql-calm-00001"), "{e}");
    }
    // A second add-on with a taken name, or a name the same app already uses, is refused.
    assert!(matches!(
        s.create_addon(
            &crate::NewAddon {
                id: new_id(),
                ..new.clone()
            },
            "CACHE",
            &a.id
        ),
        Err(StoreError::Conflict(_))
    ));
    let e = s
        .create_addon(
            &crate::NewAddon {
                id: new_id(),
                name: "postgresql-calm-00002".into(),
                ..new.clone()
            },
            "DATABASE",
            &a.id,
        )
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e}");
    assert_eq!(s.all_addons().unwrap().len(), 1, "nothing half made");
    // Attached to another app under another name.
    let (att2, rel2) = s
        .attach_addon(&addon.id, &other.id, "SHARED_DB", None, &a.id)
        .unwrap();
    assert_eq!(rel2.config["SHARED_DB_URL"], "postgres://u:p@h:1/d");
    assert_eq!(s.addon_attachments(&addon.id).unwrap().len(), 2);
    assert!(
        s.attach_addon(&addon.id, &other.id, "bad name", None, &a.id)
            .is_err()
    );
    // A plan change appends a release to both apps.
    let (changed, rels) = s
        .change_addon_plan(&addon.id, "essential-1", &addon.config, "bigger", &a.id)
        .unwrap();
    assert_eq!((changed.plan.as_str(), rels.len()), ("essential-1", 2));
    assert_eq!(
        rels[0].description,
        "Upgrade postgresql-calm-00001 to heroku-postgresql:essential-1"
    );
    assert!(
        s.change_addon_plan(&addon.id, "gigantic", &addon.config, "", &a.id)
            .is_err()
    );
    // Detach and destroy take the vars away, each with one release.
    let (_, rel3) = s.detach_addon(&att2.id, &a.id).unwrap();
    assert_eq!(
        rel3.description,
        "Detach SHARED_DB (@ref:postgresql-calm-00001)"
    );
    assert!(!rel3.config.contains_key("SHARED_DB_URL"));
    let (gone, rels) = s.destroy_addon(&addon.id, &a.id).unwrap();
    assert_eq!((gone.state.as_str(), rels.len()), ("deprovisioned", 1));
    assert!(!s.app("db-app").unwrap().config.contains_key("DATABASE_URL"));
    assert!(rels[0].addon_plan_names.is_empty());
    assert!(matches!(
        s.addon(&addon.id),
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn an_apps_addons_go_with_it() {
    let (s, a) = store();
    let (app, _) = s.create_app("doomed", &a.id, "heroku-24").unwrap();
    let new = crate::NewAddon {
        id: new_id(),
        name: "redis-calm-00001".into(),
        app_id: app.id.clone(),
        service: "heroku-redis".into(),
        plan: "mini".into(),
        config: [("URL".to_string(), "redis://:p@h:1".to_string())].into(),
        provision_message: String::new(),
    };
    s.create_addon(&new, "REDIS", &a.id).unwrap();
    s.delete_app(&app.id).unwrap();
    assert!(s.all_addons().unwrap().is_empty());
}

#[test]
fn authorizations_are_per_account_and_end_with_a_password_change() {
    let (s, owner) = store();
    let other = s.ensure_account("other@example.com", "Other").unwrap();
    let a = s
        .create_authorization(
            &owner.id,
            "KILN-token-one-abcdef",
            "laptop",
            &["global".into()],
            None,
        )
        .unwrap();
    assert_eq!(a.token_hint, "abcdef");
    // Another account cannot read, change, regenerate or delete it: it is not there for them.
    for r in [
        s.authorization(&other.id, &a.id).map(|_| ()),
        s.update_authorization(&other.id, &a.id, "mine now")
            .map(|_| ()),
        s.regenerate_authorization(&other.id, &a.id, "KILN-stolen")
            .map(|_| ()),
        s.delete_authorization(&other.id, &a.id).map(|_| ()),
    ] {
        assert!(matches!(r, Err(StoreError::NotFound { .. })), "{r:?}");
    }
    s.regenerate_authorization(&owner.id, &a.id, "KILN-token-two-123456")
        .unwrap();
    assert!(
        s.account_by_api_key("KILN-token-one-abcdef")
            .unwrap()
            .is_none()
    );
    assert!(
        s.account_by_api_key("KILN-token-two-123456")
            .unwrap()
            .is_some()
    );
    s.set_password(&owner.id, "$argon2id$fake").unwrap();
    assert!(
        s.account_by_api_key("KILN-token-two-123456")
            .unwrap()
            .is_none()
    );
    assert_eq!(
        s.password_hash(&owner.id).unwrap().as_deref(),
        Some("$argon2id$fake")
    );
}

#[test]
fn invitations_make_the_invited_address_once() {
    let (s, admin) = store();
    let expires = Timestamp(Timestamp::now().0 + 3_600_000_000);
    let inv = s
        .create_invitation("New@Example.com", "invite-token", &admin.id, expires)
        .unwrap();
    assert!(s.invitation_by_token("other-token").unwrap().is_none());
    let found = s.invitation_by_token("invite-token").unwrap().unwrap();
    assert_eq!(found.id, inv.id);
    let a = s.accept_invitation(&inv.id, "New", "$argon2id$h").unwrap();
    assert_eq!(a.email, "New@Example.com");
    assert!(matches!(
        s.accept_invitation(&inv.id, "Again", "$argon2id$h"),
        Err(StoreError::Conflict(_))
    ));
    // An address that has an account gets no invitation.
    assert!(matches!(
        s.create_invitation("owner@example.com", "t2", &admin.id, expires),
        Err(StoreError::Conflict(_))
    ));
}

#[test]
fn access_facts_follow_ownership_collaborators_and_teams() {
    use kiln_model::access::{Permissions, TeamRole};
    let (s, owner) = store();
    let bob = s.ensure_account("bob@example.com", "Bob").unwrap();
    let eve = s.ensure_account("eve@example.com", "Eve").unwrap();
    let (app, _) = s.create_app("personal", &owner.id, "heroku-24").unwrap();
    assert!(s.access_facts(&app.name, &owner.id).unwrap().owner);
    assert_eq!(
        s.access_facts(&app.name, &eve.id).unwrap(),
        AccessFacts::default()
    );
    // A missing app gives the same facts as a stranger's view of an existing one.
    assert_eq!(
        s.access_facts("no-such-app", &eve.id).unwrap(),
        AccessFacts::default()
    );
    s.set_collaborator(&app.id, &bob.id, Permissions::VIEW, false)
        .unwrap();
    assert_eq!(
        s.access_facts(&app.id, &bob.id).unwrap().granted,
        Some(Permissions::VIEW)
    );
    assert!(matches!(
        s.set_collaborator(&app.id, &bob.id, Permissions::ALL, false),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.apps_of(&bob.id).unwrap().len(), 1);
    assert!(s.apps_of(&eve.id).unwrap().is_empty());

    let team = s.create_team("acme", &owner.id).unwrap();
    assert!(matches!(
        s.create_team("acme", &bob.id),
        Err(StoreError::Conflict(_))
    ));
    let (tapp, _) = s
        .create_app_in("team-app", &owner.id, Some(&team.id), "heroku-24")
        .unwrap();
    assert_eq!(tapp.team.as_ref().map(|t| t.name.as_str()), Some("acme"));
    let facts = s.access_facts(&tapp.id, &owner.id).unwrap();
    assert_eq!(facts.team, Some(Some(TeamRole::Admin)));
    assert!(!facts.owner, "a team app has no personal owner");
    assert_eq!(s.access_facts(&tapp.id, &eve.id).unwrap().team, Some(None));
    s.set_team_member(&team.id, &eve.id, TeamRole::Viewer)
        .unwrap();
    assert_eq!(s.apps_of(&eve.id).unwrap().len(), 1);
    // The last admin cannot leave or be demoted.
    assert!(matches!(
        s.set_team_member(&team.id, &owner.id, TeamRole::Member),
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.remove_team_member(&team.id, &owner.id),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.team_members(&team.id).unwrap().len(), 2);

    // A transfer moves the app when accepted, once.
    let t = s.create_app_transfer(&app.id, &owner.id, &eve.id).unwrap();
    assert!(matches!(
        s.create_app_transfer(&app.id, &owner.id, &bob.id),
        Err(StoreError::Conflict(_))
    ));
    s.settle_app_transfer(&t.id, TransferState::Accepted)
        .unwrap();
    assert!(s.access_facts(&app.id, &eve.id).unwrap().owner);
    assert!(!s.access_facts(&app.id, &owner.id).unwrap().owner);
    assert!(matches!(
        s.settle_app_transfer(&t.id, TransferState::Declined),
        Err(StoreError::Conflict(_))
    ));
    s.audit(&app.id, Some(&owner.id), &owner.email, "Did a thing")
        .unwrap();
    assert_eq!(s.audit_log(&app.id, 10).unwrap()[0].action, "Did a thing");
    // Deleting the app takes its grants, transfers and audit with it.
    s.delete_app(&app.id).unwrap();
    assert!(s.apps_of(&bob.id).unwrap().is_empty());
}

#[test]
fn a_database_from_before_authorizations_keeps_its_keys() {
    let dir = TempDir::new("kiln-store-migrate");
    {
        let conn = rusqlite::Connection::open(db(&dir)).unwrap();
        for step in &MIGRATIONS[..7] {
            conn.execute_batch(step).unwrap();
        }
        conn.pragma_update(None, "user_version", 7).unwrap();
        conn.execute(
            "INSERT INTO accounts (id, email, name, created_at, updated_at) VALUES ('a1', 'admin@kiln.local', 'Admin', 1, 1)",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO api_keys (key_sha256, account_id, description, created_at) VALUES (?1, 'a1', 'admin key', 1)",
            [hash_api_key("old-admin-key")],
        )
        .unwrap();
    }
    let s = SqliteStore::open(&db(&dir), &test_key()).unwrap();
    let (account, auth) = s.account_by_api_key("old-admin-key").unwrap().unwrap();
    assert_eq!(account.id, "a1");
    assert!(
        account.admin,
        "the bootstrap admin becomes an administrator"
    );
    assert_eq!(auth.description, "admin key");
    assert!(uuid::Uuid::parse_str(&auth.id).is_ok(), "{}", auth.id);
    assert_eq!(auth.expires_at, None);
}

/// Every byte of the database's files (the WAL too), as text, for "not in clear" checks.
fn file_bytes(dir: &TempDir) -> String {
    let mut all = Vec::new();
    for name in ["kiln.db", "kiln.db-wal"] {
        if let Ok(b) = std::fs::read(dir.join(name)) {
            all.extend(b);
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

#[test]
fn secrets_are_sealed_in_the_file_and_open_only_with_the_key() {
    let dir = TempDir::new("kiln-store-sealed");
    {
        let s = SqliteStore::open(&db(&dir), &test_key()).unwrap();
        let owner = s.ensure_account("o@example.com", "O").unwrap();
        let (app, _) = s.create_app("sealed", &owner.id, "heroku-24").unwrap();
        s.update_config(
            &app.id,
            &patch(&[("API_TOKEN", Some("plain-config-value-4711"))]),
            &owner.id,
        )
        .unwrap();
        let new = crate::NewAddon {
            id: new_id(),
            name: "redis-sealed-00001".into(),
            app_id: app.id.clone(),
            service: "heroku-redis".into(),
            plan: "mini".into(),
            config: [(
                "URL".to_string(),
                "redis://:addon-password-4711@h:1".to_string(),
            )]
            .into(),
            provision_message: "ready".into(),
        };
        s.create_addon(&new, "REDIS", &owner.id).unwrap();
        let app = s.app("sealed").unwrap();
        assert_eq!(
            app.config.get("API_TOKEN").map(String::as_str),
            Some("plain-config-value-4711")
        );
    }
    let bytes = file_bytes(&dir);
    for secret in ["plain-config-value-4711", "addon-password-4711"] {
        assert!(
            !bytes.contains(secret),
            "{secret} is in the database file in clear"
        );
    }
    // The right key opens them; another key is refused with a clear error, not garbage.
    let s = SqliteStore::open(&db(&dir), &test_key()).unwrap();
    assert_eq!(
        s.app("sealed")
            .unwrap()
            .config
            .get("REDIS_URL")
            .map(String::as_str),
        Some("redis://:addon-password-4711@h:1")
    );
    drop(s);
    let wrong =
        SqliteStore::open(&db(&dir), &MasterKey::from_hex(&"11".repeat(32)).unwrap()).unwrap();
    match wrong.app("sealed") {
        Err(StoreError::Db(m)) => assert!(m.contains("master key"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_older_database_has_its_secrets_sealed_and_the_clear_copies_removed() {
    let dir = TempDir::new("kiln-store-seal-migrate");
    {
        let conn = rusqlite::Connection::open(db(&dir)).unwrap();
        for step in &MIGRATIONS[..SEALING_STEP - 1] {
            conn.execute_batch(step).unwrap();
        }
        conn.pragma_update(None, "user_version", SEALING_STEP as i64 - 1)
            .unwrap();
        conn.execute_batch(
            r#"INSERT INTO accounts (id, email, name, created_at, updated_at) VALUES ('a1', 'o@example.com', 'O', 1, 1);
               INSERT INTO apps (id, name, owner_id, uid, stack, config, created_at, updated_at)
                 VALUES ('p1', 'old-app', 'a1', 20000, 'heroku-24', '{"OLD_SECRET":"old-clear-value-0815"}', 1, 1);
               INSERT INTO releases (id, app_id, version, description, status, config, user_id, created_at, updated_at)
                 VALUES ('r1', 'p1', 1, 'Initial release', 'succeeded', '{"OLD_SECRET":"old-clear-value-0815"}', 'a1', 1, 1);"#,
        )
        .unwrap();
    }
    assert!(file_bytes(&dir).contains("old-clear-value-0815"));
    let s = SqliteStore::open(&db(&dir), &test_key()).unwrap();
    assert_eq!(
        s.app("old-app")
            .unwrap()
            .config
            .get("OLD_SECRET")
            .map(String::as_str),
        Some("old-clear-value-0815")
    );
    assert_eq!(
        s.release("p1", "1")
            .unwrap()
            .config
            .get("OLD_SECRET")
            .map(String::as_str),
        Some("old-clear-value-0815")
    );
    assert!(!file_bytes(&dir).contains("old-clear-value-0815"));
    // The ledger is still append-only.
    let conn = s.lock();
    assert!(
        conn.execute("UPDATE releases SET description = 'x' WHERE id = 'r1'", [])
            .is_err()
    );
}
