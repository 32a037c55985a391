//! Ruby (issue 16, acceptance 1 and 4): a Sinatra app on Thin and a Rails 6.1 app on a Kiln
//! PostgreSQL add-on, pushed with `git push`, built by the built-in Ruby buildpack with the
//! stack's Ruby and Bundler, and served through the router; the Rails app's migration runs in
//! the `release:` phase and its page reads and writes the migrated table. A Gemfile that
//! cannot resolve fails with Bundler's own words, a Gemfile asking for a Ruby the stack lacks
//! fails naming the stack's, and neither creates a release while the running version keeps
//! serving.
//!
//! rubygems.org is out of reach of the test machine: the apps use only gems Debian installs
//! (ruby-sinatra, thin, ruby-rails, ruby-pg, puma), and each Gemfile.lock is made when the
//! fixture is, with `bundle lock --local`, since the versions differ between Debian releases.

use crate::common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn ruby_stack_installed() {
    let out = Command::new("ruby")
        .args([
            "-e",
            "%w[bundler sinatra thin puma rails pg].each { |g| gem g }",
        ])
        .output();
    assert!(
        out.as_ref().is_ok_and(|o| o.status.success()),
        "the stack's Ruby or its gems are missing: test.sh installs ruby, bundler, ruby-sinatra, \
         thin, puma, ruby-rails and ruby-pg ({out:?})"
    );
}

/// The stack's Ruby version, as the buildpack names it (`3.1.2`).
fn stack_ruby() -> String {
    let out = Command::new("ruby")
        .args(["-e", "print RUBY_VERSION"])
        .output()
        .expect("ruby");
    String::from_utf8(out.stdout).unwrap()
}

/// Writes the fixture's Gemfile.lock from the gems installed on this machine, as a developer
/// would with `bundle lock`, and commits it.
fn bundle_lock(dir: &Path) {
    bundle_lock_seeing(dir, None)
}

/// [`bundle_lock`], with the gems installed in `more` (a gem directory) seen too.
fn bundle_lock_seeing(dir: &Path, more: Option<&Path>) {
    let home = dir.parent().unwrap().join("bundler-home");
    std::fs::create_dir_all(&home).unwrap();
    let mut lock = Command::new("bundle");
    lock.args(["lock", "--local"])
        .current_dir(dir)
        .env("HOME", &home)
        .env("BUNDLE_GEMFILE", dir.join("Gemfile"))
        .env_remove("GEM_HOME")
        .env_remove("GEM_PATH");
    if let Some(more) = more {
        let out = Command::new("ruby")
            .args(["-e", "print Gem.default_path.join(':')"])
            .output()
            .expect("ruby");
        let default = String::from_utf8(out.stdout).unwrap();
        lock.env("GEM_PATH", format!("{}:{default}", more.display()));
    }
    let out = lock
        .env_remove("BUNDLE_PATH")
        .env_remove("BUNDLE_FROZEN")
        .env_remove("BUNDLE_DEPLOYMENT")
        .env_remove("RUBYOPT")
        .output()
        .expect("run bundle");
    assert!(
        out.status.success() && dir.join("Gemfile.lock").is_file(),
        "bundle lock --local failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    commit_all(dir, "lock the bundle");
}

/// The push's "Default types for buildpack -> ..." line.
fn default_types_line(out: &str) -> String {
    out.lines()
        .find(|l| l.contains("Default types for buildpack ->"))
        .unwrap_or_else(|| panic!("no default process types in the push output:\n{out}"))
        .to_string()
}

const SINATRA_GEMFILE: &str = "source \"https://rubygems.org\"\n\ngem \"sinatra\"\ngem \"thin\"\n";

const SINATRA_CONFIG_RU: &str = "require \"./app\"\nrun Sinatra::Application\n";

const SINATRA_APP: &str = r#"require "sinatra"

get "/" do
  content_type "text/plain"
  "Sinatra #{Sinatra::VERSION} on #{request.env["SERVER_SOFTWARE"]} " \
    "rack_env=#{ENV["RACK_ENV"]} dyno=#{ENV["DYNO"]}\n"
end
"#;

fn sinatra_app(name: &str) -> std::path::PathBuf {
    let dir = fixture_repo(
        name,
        &[
            ("Gemfile", SINATRA_GEMFILE),
            ("config.ru", SINATRA_CONFIG_RU),
            ("app.rb", SINATRA_APP),
        ],
    );
    bundle_lock(&dir);
    dir
}

fn wait_for_sinatra(s: &Server, app: &str) -> Response {
    s.wait_for_app(app, Duration::from_secs(60), "the Sinatra web dyno", || {
        let r = s.get(app, "/");
        (r.status == 200 && r.body.starts_with("Sinatra ")).then_some(r)
    })
}

#[test]
fn a_sinatra_app_on_thin_is_built_with_bundler_and_served_through_the_router() {
    ruby_stack_installed();
    let s = Server::start("lang-ruby-thin");
    s.ok(&["apps:create", "rubythin"]);
    let dir = sinatra_app("ruby-sinatra");
    let (ok, out) = s.push(&dir, "rubythin");
    assert!(ok, "{out}");
    assert!(out.contains("Ruby app detected"), "{out}");
    assert!(
        out.contains(&format!("Using Ruby {} and Bundler ", stack_ruby())),
        "{out}"
    );
    assert!(
        out.contains("Installing dependencies using Bundler"),
        "{out}"
    );
    assert!(
        out.contains("BUNDLE_WITHOUT=development:test BUNDLE_FROZEN=true"),
        "the lockfile is enforced:\n{out}"
    );
    assert!(out.contains("Running: bundle install"), "{out}");
    assert!(
        out.contains("Using sinatra ") && out.contains("Using thin "),
        "Bundler used the stack's gems:\n{out}"
    );
    assert!(out.contains("Bundle complete!"), "{out}");
    let types = default_types_line(&out);
    for t in ["web", "rake", "console"] {
        assert!(types.contains(t), "{types}");
    }

    // Sinatra answered, on Thin (Thin names itself in SERVER_SOFTWARE and the Server header).
    let r = wait_for_sinatra(&s, "rubythin");
    assert!(r.body.contains(" on thin "), "{}", r.body);
    assert!(
        r.body.ends_with("rack_env=production dyno=web.1\n"),
        "{}",
        r.body
    );
    assert_eq!(r.header("server"), Some("thin"), "{r:?}");

    // One-off dynos get the same environment: RACK_ENV, the slug's GEM_HOME, the bundle.
    let out = s.ok(&["run", "-a", "rubythin", "--", "printenv", "RACK_ENV"]);
    assert_eq!(out.trim(), "production", "{out}");
    let out = s.ok(&[
        "run",
        "-a",
        "rubythin",
        "--",
        "sh",
        "-c",
        "echo $GEM_HOME; bundle exec ruby -e 'require \"sinatra/base\"; puts Sinatra::VERSION'",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines
            .first()
            .is_some_and(|l| l.starts_with("/app/vendor/bundle/ruby/")),
        "{out}"
    );
    assert!(
        r.body
            .starts_with(&format!("Sinatra {} ", lines.last().unwrap().trim())),
        "{out}\n{}",
        r.body
    );

    // A second build with the same Gemfile.lock installs nothing new and still serves.
    let out = redeploy(&s, &dir, "rubythin", SINATRA_APP);
    assert!(
        !out.contains("Fetching gem") && !out.contains("Fetching source index"),
        "nothing is fetched:\n{out}"
    );
}

/// Pushes a second deploy of a Sinatra fixture (its page changed: two spaces after
/// `Sinatra`) and waits until it serves; the push's output.
fn redeploy(s: &Server, dir: &Path, app: &str, app_rb: &str) -> String {
    std::fs::write(
        dir.join("app.rb"),
        app_rb.replace("Sinatra #{", "Sinatra  #{"),
    )
    .unwrap();
    commit_all(dir, "a second deploy");
    let (ok, out) = s.push(dir, app);
    assert!(ok, "{out}");
    s.wait_for_app(app, Duration::from_secs(60), "the second release", || {
        let r = s.get(app, "/");
        (r.status == 200 && r.body.starts_with("Sinatra  ")).then_some(())
    });
    out
}

/// A gem this machine does not have installed, made with `gem build` and put in the app's
/// `vendor/cache` as `bundle package` would: Bundler installs it from there, which is the
/// install a cached build must not repeat.
fn vendor_tiny_gem(dir: &Path) -> std::path::PathBuf {
    let src = dir.parent().unwrap().join("kilntiny-src");
    std::fs::create_dir_all(src.join("lib")).unwrap();
    std::fs::write(
        src.join("lib/kilntiny.rb"),
        "module Kilntiny\n  VERSION = \"0.1.0\"\nend\n",
    )
    .unwrap();
    std::fs::write(
        src.join("kilntiny.gemspec"),
        "Gem::Specification.new do |s|\n  s.name = \"kilntiny\"\n  s.version = \"0.1.0\"\n  \
         s.summary = \"a test gem\"\n  s.authors = [\"kiln\"]\n  s.files = [\"lib/kilntiny.rb\"]\n  \
         s.license = \"MIT\"\nend\n",
    )
    .unwrap();
    let out = Command::new("gem")
        .args(["build", "kilntiny.gemspec"])
        .current_dir(&src)
        .env("HOME", &src)
        .output()
        .expect("run gem build");
    assert!(out.status.success(), "gem build: {out:?}");
    std::fs::create_dir_all(dir.join("vendor/cache")).unwrap();
    std::fs::copy(
        src.join("kilntiny-0.1.0.gem"),
        dir.join("vendor/cache/kilntiny-0.1.0.gem"),
    )
    .unwrap();
    // Installed beside the fixture too, for the developer's `bundle lock` to see it.
    let gems = src.join("gems");
    let out = Command::new("gem")
        .args(["install", "--local", "--no-document", "--install-dir"])
        .arg(&gems)
        .arg(src.join("kilntiny-0.1.0.gem"))
        .env("HOME", &src)
        .output()
        .expect("run gem install");
    assert!(out.status.success(), "gem install: {out:?}");
    gems
}

/// A Rack app whose bundle has Puma (and not Thin) gets Puma's own default command, bound to
/// `$PORT` on every address, in production. Its gems are kept in the build cache: a gem the
/// first build installed (from the app's `vendor/cache`) is not installed again by the next.
#[test]
fn a_rack_app_on_puma_is_started_with_pumas_default_command_and_its_gems_are_cached() {
    ruby_stack_installed();
    let s = Server::start("lang-ruby-puma");
    s.ok(&["apps:create", "rubypuma"]);
    let gemfile = SINATRA_GEMFILE.replace("\"thin\"", "\"puma\"") + "gem \"kilntiny\"\n";
    let app = SINATRA_APP
        .replace(
            "require \"sinatra\"",
            "require \"sinatra\"\nrequire \"kilntiny\"",
        )
        .replace(
            "dyno=#{ENV[\"DYNO\"]}",
            "dyno=#{ENV[\"DYNO\"]} kilntiny=#{Kilntiny::VERSION}",
        );
    let dir = fixture_repo(
        "ruby-puma",
        &[
            ("Gemfile", &gemfile),
            ("config.ru", SINATRA_CONFIG_RU),
            ("app.rb", &app),
        ],
    );
    let gems = vendor_tiny_gem(&dir);
    bundle_lock_seeing(&dir, Some(&gems));
    let (ok, out) = s.push(&dir, "rubypuma");
    assert!(ok, "{out}");
    assert!(out.contains("Using puma "), "{out}");
    assert!(out.contains("Installing kilntiny 0.1.0"), "{out}");
    let r = wait_for_sinatra(&s, "rubypuma");
    assert!(
        r.body.to_ascii_lowercase().contains(" on puma "),
        "{}",
        r.body
    );
    assert!(
        r.body
            .ends_with("rack_env=production dyno=web.1 kilntiny=0.1.0\n"),
        "{}",
        r.body
    );
    let ps = s.ok(&["ps", "-a", "rubypuma"]);
    assert!(
        ps.contains("bundle exec puma -p ${PORT:-5000} -e $RACK_ENV"),
        "{ps}"
    );

    // The next build finds the gem in the cache.
    let out = redeploy(&s, &dir, "rubypuma", &app);
    assert!(
        out.contains("Using kilntiny 0.1.0") && !out.contains("Installing kilntiny"),
        "the cached gem is used, not installed again:\n{out}"
    );
}

// A minimal Rails app, written by hand: Active Record and Action Controller only (no asset
// pipeline, so the build skips assets:precompile), no config/database.yml (Rails takes
// DATABASE_URL alone), a migration run by the release phase, and a page that writes and
// reads the migrated table.
const RAILS_GEMFILE: &str =
    "source \"https://rubygems.org\"\n\ngem \"rails\", \">= 6.1\"\ngem \"pg\"\ngem \"puma\"\n";

const RAILS_BOOT: &str = r#"ENV["BUNDLE_GEMFILE"] ||= File.expand_path("../Gemfile", __dir__)
require "bundler/setup"
"#;

const RAILS_APPLICATION: &str = r#"require_relative "boot"

require "rails"
require "active_record/railtie"
require "action_controller/railtie"

Bundler.require(*Rails.groups)

module Notes
  class Application < Rails::Application
    config.load_defaults 6.1
    config.eager_load = Rails.env.production?
    config.api_only = true
    if ENV["RAILS_LOG_TO_STDOUT"].present?
      config.logger = ActiveSupport::TaggedLogging.new(ActiveSupport::Logger.new($stdout))
    end
  end
end
"#;

const RAILS_ENVIRONMENT: &str = "require_relative \"application\"\nRails.application.initialize!\n";

const RAILS_ROUTES: &str = r#"Rails.application.routes.draw do
  get "/" => "notes#index"
  get "/add" => "notes#create"
end
"#;

const RAILS_CONFIG_RU: &str = "require_relative \"config/environment\"\nrun Rails.application\n";

const RAILS_RAKEFILE: &str =
    "require_relative \"config/application\"\nRails.application.load_tasks\n";

const RAILS_BIN: &str = r#"#!/usr/bin/env ruby
APP_PATH = File.expand_path("../config/application", __dir__)
require_relative "../config/boot"
require "rails/commands"
"#;

const RAILS_APPLICATION_CONTROLLER: &str =
    "class ApplicationController < ActionController::API\nend\n";

const RAILS_NOTES_CONTROLLER: &str = r#"class NotesController < ApplicationController
  def index
    render plain: "notes=#{Note.order(:id).pluck(:body).join(",")} count=#{Note.count} " \
      "env=#{Rails.env} adapter=#{Note.connection.adapter_name} " \
      "server=#{request.env["SERVER_SOFTWARE"]}\n"
  end

  def create
    note = Note.create!(body: params.require(:body))
    render plain: "added #{note.body}\n"
  end
end
"#;

const RAILS_APPLICATION_RECORD: &str =
    "class ApplicationRecord < ActiveRecord::Base\n  self.abstract_class = true\nend\n";

const RAILS_NOTE: &str = "class Note < ApplicationRecord\nend\n";

const RAILS_MIGRATION: &str = r#"class CreateNotes < ActiveRecord::Migration[6.1]
  def change
    create_table :notes do |t|
      t.string :body, null: false
      t.timestamps
    end
  end
end
"#;

#[test]
fn a_rails_app_migrates_in_the_release_phase_and_serves_from_postgres() {
    ruby_stack_installed();
    let s = Server::start("lang-rails");
    s.ok(&["apps:create", "railsnotes"]);
    let out = s.ok(&["addons:create", "heroku-postgresql", "-a", "railsnotes"]);
    assert!(out.contains("as DATABASE_URL"), "{out}");

    let dir = fixture_repo(
        "ruby-rails",
        &[
            ("Gemfile", RAILS_GEMFILE),
            ("config/boot.rb", RAILS_BOOT),
            ("config/application.rb", RAILS_APPLICATION),
            ("config/environment.rb", RAILS_ENVIRONMENT),
            ("config/routes.rb", RAILS_ROUTES),
            ("config.ru", RAILS_CONFIG_RU),
            ("Rakefile", RAILS_RAKEFILE),
            ("bin/rails", RAILS_BIN),
            (
                "app/controllers/application_controller.rb",
                RAILS_APPLICATION_CONTROLLER,
            ),
            (
                "app/controllers/notes_controller.rb",
                RAILS_NOTES_CONTROLLER,
            ),
            ("app/models/application_record.rb", RAILS_APPLICATION_RECORD),
            ("app/models/note.rb", RAILS_NOTE),
            ("db/migrate/20240101000000_create_notes.rb", RAILS_MIGRATION),
            // The web process is the buildpack's (bin/rails server); the release phase migrates.
            ("Procfile", "release: bundle exec rake db:migrate\n"),
        ],
    );
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.join("bin/rails"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    bundle_lock(&dir);

    let (ok, out) = s.push(&dir, "railsnotes");
    assert!(ok, "{out}");
    assert!(out.contains("Ruby app detected"), "{out}");
    assert!(
        out.contains("Using railties 6.") || out.contains("Using railties 7."),
        "{out}"
    );
    assert!(out.contains("Using pg "), "{out}");
    assert!(out.contains("Detecting rake tasks"), "{out}");
    assert!(
        out.contains("No assets:precompile task: nothing to precompile"),
        "an app without the asset pipeline skips it:\n{out}"
    );
    assert!(out.contains("Procfile declares types -> release"), "{out}");
    let types = default_types_line(&out);
    for t in ["web", "rake", "console"] {
        assert!(types.contains(t), "{types}");
    }
    // The release phase ran the migration, and its output is the push's.
    assert!(out.contains("Running release command"), "{out}");
    assert!(
        out.contains("CreateNotes: migrating") && out.contains("CreateNotes: migrated"),
        "{out}"
    );

    // Rails on Puma (bin/rails server), on the add-on's database, in production.
    let body = s.wait_for_app(
        "railsnotes",
        Duration::from_secs(90),
        "the Rails web dyno",
        || {
            let r = s.get("railsnotes", "/");
            (r.status == 200 && r.body.starts_with("notes=")).then_some(r.body)
        },
    );
    assert!(
        body.starts_with("notes= count=0 env=production adapter=PostgreSQL server=puma "),
        "{body}"
    );
    for note in ["alpha", "beta"] {
        let r = s.get("railsnotes", &format!("/add?body={note}"));
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, format!("added {note}\n").as_str()),
            "{r:?}"
        );
    }
    let r = s.get("railsnotes", "/");
    assert!(
        r.body
            .starts_with("notes=alpha,beta count=2 env=production adapter=PostgreSQL"),
        "{r:?}"
    );

    // The migration is recorded as run, and one-off dynos get Rails' environment, with the
    // secret the buildpack made for the app.
    let out = s.ok(&[
        "run",
        "-a",
        "railsnotes",
        "--",
        "bundle",
        "exec",
        "rake",
        "db:migrate:status",
    ]);
    assert!(
        out.lines().any(|l| l.contains("up")
            && l.contains("20240101000000")
            && l.contains("Create notes")),
        "{out}"
    );
    let out = s.ok(&[
        "run",
        "-a",
        "railsnotes",
        "--",
        "sh",
        "-c",
        "echo $RAILS_ENV $RAILS_LOG_TO_STDOUT $RAILS_SERVE_STATIC_FILES ${#SECRET_KEY_BASE}",
    ]);
    assert_eq!(out.trim(), "production enabled enabled 128", "{out}");
    let releases = s.ok(&["releases", "-a", "railsnotes"]);
    assert!(
        releases
            .lines()
            .any(|l| l.starts_with("v") && l.contains("Deploy")),
        "{releases}"
    );
}

#[test]
fn unresolvable_gemfiles_and_missing_rubies_fail_and_keep_the_app_serving() {
    ruby_stack_installed();
    let s = Server::start("lang-ruby-fail");
    s.ok(&["apps:create", "rubyfail"]);
    let dir = sinatra_app("ruby-sinatra-fail");
    let (ok, out) = s.push(&dir, "rubyfail");
    assert!(ok, "{out}");
    let before = wait_for_sinatra(&s, "rubyfail").body;
    let releases = s.release_versions("rubyfail");

    // A gem that is neither on the machine nor reachable: Bundler's own words. (With no
    // lockfile the buildpack tries the stack's gems first, whose failure names the gem, then
    // the Gemfile's source, which is out of reach here or does not have it.)
    std::fs::write(
        dir.join("Gemfile"),
        format!("{SINATRA_GEMFILE}gem \"nonexistent-kiln-gem\"\n"),
    )
    .unwrap();
    std::fs::remove_file(dir.join("Gemfile.lock")).unwrap();
    commit_all(&dir, "a gem that does not exist");
    let started = std::time::Instant::now();
    let (ok, out) = s.push(&dir, "rubyfail");
    assert!(!ok, "{out}");
    assert!(
        out.contains("Could not find gem 'nonexistent-kiln-gem'"),
        "Bundler names the gem:\n{out}"
    );
    assert!(out.contains("Failed to install gems via Bundler."), "{out}");
    assert!(
        out.contains("Push rejected, failed to compile Ruby app"),
        "{out}"
    );
    eprintln!("the unresolvable Gemfile failed in {:?}", started.elapsed());
    assert_eq!(s.release_versions("rubyfail"), releases, "no release");
    let r = s.get("rubyfail", "/");
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, before.as_str()),
        "still serving"
    );

    // A Ruby the stack does not have: the stack's is named.
    assert!(
        git(&dir)
            .args(["reset", "-q", "--hard", "HEAD~1"])
            .status()
            .unwrap()
            .success()
    );
    std::fs::write(
        dir.join("Gemfile"),
        SINATRA_GEMFILE.replace("\n\n", "\n\nruby \"2.7.0\"\n"),
    )
    .unwrap();
    commit_all(&dir, "ask for Ruby 2.7.0");
    let (ok, out) = s.push(&dir, "rubyfail");
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "This app asks for Ruby 2.7.0 (the Gemfile's `ruby` line), and this stack has Ruby {}.",
            stack_ruby()
        )),
        "{out}"
    );
    assert!(!out.contains("Running: bundle install"), "{out}");
    assert_eq!(s.release_versions("rubyfail"), releases, "no release");
    let r = s.get("rubyfail", "/");
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, before.as_str()),
        "still serving"
    );
}
