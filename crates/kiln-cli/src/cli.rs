//! The command line grammar: Heroku's command names (`apps:create`, `config:set`, …) and
//! flags, with Heroku's hidden short aliases (`create`, `scale`, `rollback`) where the
//! Heroku CLI has them. `server` is not here: the binary handles it before calling us.

use clap::{Args, Parser, Subcommand};

const AFTER_HELP: &str = "\
`kiln server` starts the platform itself (API, git receiver, builder, router, dynos).
Every other command talks to a running platform's API:
  KILN_API_URL  API address (else the one saved by `kiln login`, else http://127.0.0.1:5000)
  KILN_API_KEY  API key (else the `machine <host:port>` entry in ~/.netrc)
  KILN_APP      app to act on (else -a APP, else the app of this repo's `kiln` git remote)";

#[derive(Debug, Parser)]
#[command(
    name = "kiln",
    bin_name = "kiln",
    version,
    about = "Kiln, a self-hosted Heroku: manage apps with Heroku's commands.",
    after_help = AFTER_HELP,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

// Which app a command acts on (see `resolve_app`). A plain comment: clap would show a doc
// comment here as the help of every command that flattens these flags and has none itself.
#[derive(Debug, Clone, Default, Args)]
pub struct AppFlags {
    /// App to run the command against
    #[arg(short = 'a', long = "app", value_name = "APP")]
    pub app: Option<String>,
    /// Git remote of the app to use (default: kiln)
    #[arg(short = 'r', long = "remote", value_name = "REMOTE")]
    pub remote: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Log in with your email and password (or save an API key given on stdin)
    #[command(name = "login")]
    Login {
        /// API to log in to (default: KILN_API_URL, the saved one, or http://127.0.0.1:5000)
        #[arg(long, value_name = "URL")]
        api_url: Option<String>,
        /// Your email (the password is then read from stdin)
        #[arg(long, short = 'e', value_name = "EMAIL")]
        email: Option<String>,
        /// Save an API key read from stdin instead of logging in with a password
        #[arg(long, conflicts_with = "email")]
        key: bool,
    },

    /// Revoke this machine's login key and forget it
    #[command(name = "logout")]
    Logout,

    /// Show the API key this machine uses
    #[command(name = "auth:token")]
    AuthToken,

    /// Show the email you are logged in as
    #[command(name = "auth:whoami", alias = "whoami")]
    Whoami,

    /// Change your password (ends every API key you have; this machine gets a new one)
    #[command(name = "passwd", alias = "auth:password")]
    Passwd,

    /// Make an account with an invitation (or freely when the server allows sign-up)
    #[command(name = "signup")]
    Signup {
        /// API to sign up with
        #[arg(long, value_name = "URL")]
        api: Option<String>,
        /// Your email (an invitation is for one address)
        #[arg(long, value_name = "EMAIL")]
        email: String,
        /// The invitation token from the link you were sent
        #[arg(long, value_name = "TOKEN")]
        invitation: Option<String>,
        /// Your name
        #[arg(long, default_value = "")]
        name: String,
    },

    /// List the server's accounts (administrators)
    #[command(name = "users")]
    Users {
        #[arg(long, short = 'j')]
        json: bool,
    },

    /// Make an account (administrators); its password is read from stdin
    #[command(name = "users:create")]
    UsersCreate {
        email: String,
        #[arg(long, default_value = "")]
        name: String,
        /// Make the account an administrator too
        #[arg(long)]
        admin: bool,
    },

    /// Invite an address to make its own account (administrators)
    #[command(name = "users:invite")]
    UsersInvite { email: String },

    /// List your API keys
    #[command(name = "authorizations", alias = "authorizations:list")]
    Authorizations {
        #[arg(long, short = 'j')]
        json: bool,
    },

    /// Make an API key (shown once)
    #[command(name = "authorizations:create")]
    AuthorizationsCreate {
        #[arg(long, short = 'd', default_value = "")]
        description: String,
        /// Seconds until it expires
        #[arg(long, short = 'e')]
        expires_in: Option<u64>,
        /// Print only the token
        #[arg(long, short = 'S')]
        short: bool,
    },

    /// Revoke an API key (sessions it opened end at once)
    #[command(name = "authorizations:revoke", alias = "authorizations:destroy")]
    AuthorizationsRevoke { id: String },

    /// Give an API key a new token (the old one stops working)
    #[command(name = "authorizations:rotate")]
    AuthorizationsRotate { id: String },

    /// List who has access to an app
    #[command(name = "access")]
    Access {
        #[command(flatten)]
        app: AppFlags,
        #[arg(long, short = 'j')]
        json: bool,
    },

    /// Give a user access to an app
    #[command(name = "access:add")]
    AccessAdd {
        email: String,
        #[command(flatten)]
        app: AppFlags,
        /// Comma-separated: view, deploy, operate, manage (default: all but the owner's
        /// rights on a personal app, view on a team app)
        #[arg(long, short = 'p', value_delimiter = ',')]
        permissions: Vec<String>,
    },

    /// Change a collaborator's permissions
    #[command(name = "access:update")]
    AccessUpdate {
        email: String,
        #[command(flatten)]
        app: AppFlags,
        #[arg(long, short = 'p', value_delimiter = ',', required = true)]
        permissions: Vec<String>,
    },

    /// Take a user's access to an app away
    #[command(name = "access:remove")]
    AccessRemove {
        email: String,
        #[command(flatten)]
        app: AppFlags,
    },

    /// List your teams
    #[command(name = "teams", alias = "orgs")]
    Teams {
        #[arg(long, short = 'j')]
        json: bool,
    },

    /// Make a team (you become its admin)
    #[command(name = "teams:create")]
    TeamsCreate { name: String },

    /// List a team's members
    #[command(name = "members")]
    Members {
        #[arg(long, short = 't')]
        team: String,
        #[arg(long, short = 'j')]
        json: bool,
    },

    /// Add a member to a team, or change their role
    #[command(name = "members:add", alias = "members:set")]
    MembersAdd {
        email: String,
        #[arg(long, short = 't')]
        team: String,
        /// admin, member or viewer
        #[arg(long, short = 'r', default_value = "member")]
        role: String,
    },

    /// Remove a member from a team
    #[command(name = "members:remove")]
    MembersRemove {
        email: String,
        #[arg(long, short = 't')]
        team: String,
    },

    /// Transfer an app to a user (who must accept) or into one of your teams
    #[command(name = "apps:transfer")]
    AppsTransfer {
        /// A user's email or a team's name
        recipient: String,
        #[command(flatten)]
        app: AppFlags,
    },

    /// List app transfers you made or were offered
    #[command(name = "transfers")]
    Transfers,

    /// Accept an app transfer offered to you
    #[command(name = "transfers:accept")]
    TransfersAccept { id: String },

    /// Decline an app transfer (or withdraw one you made)
    #[command(name = "transfers:decline")]
    TransfersDecline { id: String },

    /// Show who did what to an app
    #[command(name = "audit")]
    Audit {
        #[command(flatten)]
        app: AppFlags,
        #[arg(long, short = 'n', default_value_t = 100)]
        num: u32,
    },

    /// List your apps
    #[command(name = "apps", alias = "apps:list", alias = "list")]
    Apps {
        /// Output as JSON
        #[arg(long, short = 'j')]
        json: bool,
    },

    /// Create a new app (and a `kiln` git remote for it when run in a git repo)
    #[command(name = "apps:create", alias = "create")]
    AppsCreate {
        /// Name of the app (a random one when omitted)
        name: Option<String>,
        /// Team to own the app
        #[arg(long, short = 't')]
        team: Option<String>,
        /// Do not add a git remote
        #[arg(long)]
        no_remote: bool,
    },

    /// Show detailed app information
    #[command(name = "apps:info", alias = "info")]
    AppsInfo {
        #[command(flatten)]
        app: AppFlags,
        /// App name (same as --app)
        #[arg(hide = true, value_name = "APP")]
        name: Option<String>,
        /// Output as JSON
        #[arg(long, short = 'j')]
        json: bool,
    },

    /// Permanently destroy an app
    #[command(name = "apps:destroy", alias = "destroy", alias = "apps:delete")]
    AppsDestroy {
        /// App to destroy (same as --app)
        #[arg(value_name = "NAME")]
        name: Option<String>,
        #[command(flatten)]
        app: AppFlags,
        /// The app's name again, to confirm
        #[arg(short = 'c', long, value_name = "NAME")]
        confirm: Option<String>,
    },

    /// Display the config vars of an app
    #[command(name = "config")]
    Config {
        #[command(flatten)]
        app: AppFlags,
        /// Output as JSON
        #[arg(long, short = 'j')]
        json: bool,
        /// Output as KEY=value lines for a shell
        #[arg(long, short = 's')]
        shell: bool,
    },

    /// Display one config var's value
    #[command(name = "config:get")]
    ConfigGet {
        #[command(flatten)]
        app: AppFlags,
        #[arg(value_name = "KEY")]
        key: String,
    },

    /// Set one or more config vars (creates a release and restarts dynos)
    #[command(name = "config:set", alias = "config:add")]
    ConfigSet {
        #[command(flatten)]
        app: AppFlags,
        #[arg(value_name = "KEY=VALUE", required = true, num_args = 1..)]
        vars: Vec<String>,
    },

    /// Unset one or more config vars
    #[command(name = "config:unset", alias = "config:remove")]
    ConfigUnset {
        #[command(flatten)]
        app: AppFlags,
        #[arg(value_name = "KEY", required = true, num_args = 1..)]
        keys: Vec<String>,
    },

    /// List an app's dynos
    #[command(name = "ps", alias = "ps:list")]
    Ps {
        #[command(flatten)]
        app: AppFlags,
        /// Only show these process types
        #[arg(value_name = "TYPE")]
        types: Vec<String>,
        /// Output as JSON
        #[arg(long, short = 'j')]
        json: bool,
    },

    /// Scale dynos up or down: web=2 worker+1 web=2:standard-2x (no arguments: show the formation)
    #[command(name = "ps:scale", alias = "scale", alias = "dyno:scale")]
    PsScale {
        #[command(flatten)]
        app: AppFlags,
        #[arg(value_name = "TYPE=N")]
        changes: Vec<String>,
    },

    /// Show or change dyno sizes: web=standard-2x worker=basic, or one SIZE for every type
    /// (no arguments: show each process type's size)
    #[command(
        name = "ps:type",
        alias = "ps:resize",
        alias = "dyno:type",
        alias = "dyno:resize"
    )]
    PsType {
        #[command(flatten)]
        app: AppFlags,
        #[arg(value_name = "TYPE=SIZE")]
        changes: Vec<String>,
    },

    /// Restart all dynos, the dynos of one process type, or one dyno
    #[command(name = "ps:restart", alias = "restart", alias = "dyno:restart")]
    PsRestart {
        #[command(flatten)]
        app: AppFlags,
        /// A process type (web) or a dyno (web.1)
        #[arg(value_name = "TYPE|DYNO")]
        target: Option<String>,
        /// Restart the dynos of this process type
        #[arg(short = 'p', long, value_name = "TYPE", conflicts_with_all = ["target", "dyno_name"])]
        process_type: Option<String>,
        /// Restart this dyno
        #[arg(short = 'd', long, value_name = "DYNO", conflicts_with = "target")]
        dyno_name: Option<String>,
    },

    /// Stop a dyno or every dyno of a process type (formation dynos are started again)
    #[command(name = "ps:stop", alias = "stop", alias = "dyno:stop")]
    PsStop {
        #[command(flatten)]
        app: AppFlags,
        /// A process type (web) or a dyno (web.1)
        #[arg(value_name = "TYPE|DYNO")]
        target: String,
    },

    /// List an app's releases
    #[command(name = "releases")]
    Releases {
        #[command(flatten)]
        app: AppFlags,
        /// How many releases to show
        #[arg(short = 'n', long, value_name = "N", default_value_t = 15)]
        num: u32,
        /// Output as JSON
        #[arg(long, short = 'j')]
        json: bool,
    },

    /// Show one release (the latest when no version is given)
    #[command(name = "releases:info")]
    ReleasesInfo {
        #[command(flatten)]
        app: AppFlags,
        /// Release version, such as v12
        #[arg(value_name = "vN")]
        release: Option<String>,
        /// Output as JSON
        #[arg(long, short = 'j')]
        json: bool,
    },

    /// Roll back to an earlier release (the previous eligible one when no version is given)
    #[command(name = "releases:rollback", alias = "rollback")]
    ReleasesRollback {
        #[command(flatten)]
        app: AppFlags,
        /// Release version to roll back to, such as v11
        #[arg(value_name = "vN")]
        release: Option<String>,
    },

    /// Show an app's logs
    #[command(name = "logs")]
    Logs {
        #[command(flatten)]
        app: AppFlags,
        /// Number of past lines to show
        #[arg(short = 'n', long, value_name = "N", default_value_t = 100)]
        num: u32,
        /// Keep streaming new lines
        #[arg(short = 't', long)]
        tail: bool,
        /// Only this dyno (web.1) or process type (web)
        #[arg(short = 'd', long, value_name = "DYNO")]
        dyno: Option<String>,
        /// Only this source (app or heroku)
        #[arg(short = 's', long, value_name = "SOURCE")]
        source: Option<String>,
        /// Only lines since then, from the retained history: an age such as 30s, 15m, 2h or 3d,
        /// or a time such as 2026-12-05T10:00:00Z
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// Only lines until then (an age or a time, as --since)
        #[arg(long, value_name = "WHEN")]
        until: Option<String>,
        /// Only lines whose message matches this regular expression
        #[arg(long, value_name = "REGEX")]
        grep: Option<String>,
    },

    /// Show an app's buildpacks
    #[command(name = "buildpacks")]
    Buildpacks {
        #[command(flatten)]
        app: AppFlags,
        /// Output as JSON
        #[arg(long, short = 'j')]
        json: bool,
    },

    /// Set an app's buildpack (used from the next build)
    #[command(name = "buildpacks:set")]
    BuildpacksSet {
        #[command(flatten)]
        app: AppFlags,
        #[arg(value_name = "URL")]
        url: String,
        /// Replace the buildpack at this position (1 is the first), keeping the others
        #[arg(short = 'i', long, value_name = "INDEX")]
        index: Option<u32>,
    },

    /// Add a buildpack to an app's list: at the end, or at --index
    #[command(name = "buildpacks:add")]
    BuildpacksAdd {
        #[command(flatten)]
        app: AppFlags,
        #[arg(value_name = "URL")]
        url: String,
        /// Where to insert it (1 is the first)
        #[arg(short = 'i', long, value_name = "INDEX")]
        index: Option<u32>,
    },

    /// Remove a buildpack from an app's list, by URL or by --index
    #[command(name = "buildpacks:remove")]
    BuildpacksRemove {
        #[command(flatten)]
        app: AppFlags,
        #[arg(value_name = "URL")]
        url: Option<String>,
        /// The position of the buildpack to remove (1 is the first)
        #[arg(short = 'i', long, value_name = "INDEX")]
        index: Option<u32>,
    },

    /// Clear an app's buildpacks: the next build detects them again
    #[command(name = "buildpacks:clear")]
    BuildpacksClear {
        #[command(flatten)]
        app: AppFlags,
    },

    /// Search the buildpacks this Kiln has (its built-ins, with their Heroku names)
    #[command(name = "buildpacks:search")]
    BuildpacksSearch {
        /// Matched against the name and the description
        #[arg(value_name = "TERM")]
        term: Option<String>,
        /// Only this name, such as ruby
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Only this namespace, such as heroku
        #[arg(long, value_name = "NAMESPACE")]
        namespace: Option<String>,
        /// Only buildpacks whose description contains this
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
    },

    /// List an app's log drains
    #[command(name = "drains")]
    Drains {
        #[command(flatten)]
        app: AppFlags,
        /// Output as JSON
        #[arg(long, short = 'j')]
        json: bool,
        /// Show each drain's id too
        #[arg(long, short = 'x')]
        extended: bool,
    },

    /// Copy an app's log stream to a syslog:// , syslog+tls:// or https:// endpoint
    #[command(name = "drains:add")]
    DrainsAdd {
        #[command(flatten)]
        app: AppFlags,
        #[arg(value_name = "URL")]
        url: String,
    },

    /// Stop copying an app's logs to a drain (by URL or token)
    #[command(name = "drains:remove")]
    DrainsRemove {
        #[command(flatten)]
        app: AppFlags,
        #[arg(value_name = "URL_OR_TOKEN")]
        url: String,
    },

    /// Show a log drain (by URL or token)
    #[command(name = "drains:info")]
    DrainsInfo {
        #[command(flatten)]
        app: AppFlags,
        #[arg(value_name = "URL_OR_TOKEN")]
        url: String,
        /// Output as JSON
        #[arg(long, short = 'j')]
        json: bool,
    },

    /// Show an app's metrics: requests, status classes, response times and router errors
    /// per minute (or its dynos' memory, load, restarts and runtime errors with --dynos)
    #[command(name = "metrics")]
    Metrics {
        #[command(flatten)]
        app: AppFlags,
        /// From this long ago (30m, 2h, 7d) or this time (RFC 3339)
        #[arg(long, default_value = "1h")]
        since: String,
        /// Until this long ago or this time (default: now)
        #[arg(long)]
        until: Option<String>,
        /// The dynos' memory, load, restarts and R-codes instead of the router's figures
        #[arg(long)]
        dynos: bool,
        /// One point per ten minutes (for windows beyond the last day)
        #[arg(long)]
        coarse: bool,
        /// Output as JSON
        #[arg(long, short = 'j')]
        json: bool,
    },

    /// List an app's switchable features (labs) and whether each is on
    #[command(name = "labs", alias = "labs:list")]
    Labs {
        #[command(flatten)]
        app: AppFlags,
        /// Output as JSON
        #[arg(long, short = 'j')]
        json: bool,
    },

    /// Switch an app feature on (log-runtime-metrics: dynos log their load and memory)
    #[command(name = "labs:enable")]
    LabsEnable {
        #[command(flatten)]
        app: AppFlags,
        #[arg(value_name = "FEATURE")]
        feature: String,
    },

    /// Switch an app feature off
    #[command(name = "labs:disable")]
    LabsDisable {
        #[command(flatten)]
        app: AppFlags,
        #[arg(value_name = "FEATURE")]
        feature: String,
    },

    /// List an app's domains: its default one and its custom domains
    #[command(name = "domains", alias = "domains:list")]
    Domains {
        #[command(flatten)]
        app: AppFlags,
        /// Output as JSON
        #[arg(long, short = 'j')]
        json: bool,
    },

    /// Serve an app at a custom domain as well (point its DNS at the DNS target shown)
    #[command(name = "domains:add")]
    DomainsAdd {
        #[command(flatten)]
        app: AppFlags,
        /// Hostname, such as www.example.com or *.example.com
        #[arg(value_name = "HOSTNAME")]
        hostname: String,
    },

    /// Stop serving an app at a custom domain
    #[command(name = "domains:remove")]
    DomainsRemove {
        #[command(flatten)]
        app: AppFlags,
        #[arg(value_name = "HOSTNAME")]
        hostname: String,
    },

    /// List the add-ons of an app (or, without one, all of yours)
    #[command(name = "addons", alias = "addons:list")]
    Addons {
        #[command(flatten)]
        app: AppFlags,
        /// Output as JSON
        #[arg(long, short = 'j')]
        json: bool,
    },

    /// Create an add-on (a PostgreSQL database, a Redis…) and attach it to an app
    #[command(name = "addons:create")]
    AddonsCreate {
        #[command(flatten)]
        app: AppFlags,
        /// SERVICE or SERVICE:PLAN, such as heroku-postgresql:essential-0 or heroku-redis
        #[arg(value_name = "SERVICE:PLAN")]
        plan: String,
        /// Name of the add-on (default: generated, such as postgresql-calm-01234)
        #[arg(long)]
        name: Option<String>,
        /// Attachment name: its config vars are NAME_URL… (default: DATABASE, REDIS…)
        #[arg(long = "as", value_name = "NAME")]
        as_: Option<String>,
        /// Wait until the add-on is ready (Kiln's are ready when the command returns)
        #[arg(long)]
        wait: bool,
        /// Options for the service, after --: -- --maxmemory_policy allkeys-lru
        #[arg(last = true, value_name = "OPTIONS")]
        options: Vec<String>,
    },

    /// Show an add-on
    #[command(name = "addons:info")]
    AddonsInfo {
        #[command(flatten)]
        app: AppFlags,
        #[arg(value_name = "ADDON")]
        addon: String,
        /// Output as JSON
        #[arg(long, short = 'j')]
        json: bool,
    },

    /// Attach an existing add-on to an app (its config vars are set there too)
    #[command(name = "addons:attach")]
    AddonsAttach {
        #[command(flatten)]
        app: AppFlags,
        #[arg(value_name = "ADDON")]
        addon: String,
        /// Attachment name (default: the service's, such as DATABASE)
        #[arg(long = "as", value_name = "NAME")]
        as_: Option<String>,
    },

    /// Detach an add-on from an app (its config vars are unset)
    #[command(name = "addons:detach")]
    AddonsDetach {
        #[command(flatten)]
        app: AppFlags,
        #[arg(value_name = "ATTACHMENT")]
        attachment: String,
    },

    /// Change an add-on's plan
    #[command(name = "addons:upgrade", alias = "addons:downgrade")]
    AddonsUpgrade {
        #[command(flatten)]
        app: AppFlags,
        #[arg(value_name = "ADDON")]
        addon: String,
        #[arg(value_name = "PLAN")]
        plan: String,
    },

    /// Destroy an add-on and its data
    #[command(name = "addons:destroy", alias = "addons:remove")]
    AddonsDestroy {
        #[command(flatten)]
        app: AppFlags,
        #[arg(value_name = "ADDON")]
        addon: String,
        /// The app's name again, to confirm
        #[arg(short = 'c', long, value_name = "APP")]
        confirm: Option<String>,
        /// Destroy it even though other apps have it attached
        #[arg(short = 'f', long)]
        force: bool,
    },

    /// List the add-on services this Kiln offers
    #[command(name = "addons:services")]
    AddonsServices {
        /// Output as JSON
        #[arg(long, short = 'j')]
        json: bool,
    },

    /// List a service's plans
    #[command(name = "addons:plans")]
    AddonsPlans {
        #[arg(value_name = "SERVICE")]
        service: String,
        /// Output as JSON
        #[arg(long, short = 'j')]
        json: bool,
    },

    /// Show a PostgreSQL database: plan, status, size against its limit, tables, connections
    #[command(name = "pg:info", alias = "pg")]
    PgInfo {
        #[command(flatten)]
        app: AppFlags,
        /// The database: an attachment such as DATABASE (the default) or HEROKU_POSTGRESQL_AMBER
        #[arg(value_name = "DATABASE")]
        database: Option<String>,
    },

    /// Open psql on a database, in a one-off dyno
    #[command(name = "pg:psql")]
    PgPsql {
        #[command(flatten)]
        app: AppFlags,
        /// The database: an attachment such as DATABASE (the default) or HEROKU_POSTGRESQL_AMBER
        #[arg(value_name = "DATABASE")]
        database: Option<String>,
        /// Run this SQL and exit
        #[arg(short = 'c', long = "command")]
        command: Option<String>,
    },

    /// Empty a database (drop everything in it)
    #[command(name = "pg:reset")]
    PgReset {
        #[command(flatten)]
        app: AppFlags,
        /// The database: an attachment such as DATABASE (the default) or HEROKU_POSTGRESQL_AMBER
        #[arg(value_name = "DATABASE")]
        database: Option<String>,
        /// The app's name again, to confirm
        #[arg(short = 'c', long, value_name = "APP")]
        confirm: Option<String>,
    },

    /// Give a database new credentials (every attached app gets them; dynos restart)
    #[command(name = "pg:credentials:rotate")]
    PgCredentialsRotate {
        #[command(flatten)]
        app: AppFlags,
        /// The database: an attachment such as DATABASE (the default) or HEROKU_POSTGRESQL_AMBER
        #[arg(value_name = "DATABASE")]
        database: Option<String>,
        /// The app's name again, to confirm
        #[arg(short = 'c', long, value_name = "APP")]
        confirm: Option<String>,
    },

    /// List an app's backups and restores
    #[command(name = "pg:backups")]
    PgBackups {
        #[command(flatten)]
        app: AppFlags,
        /// Output as JSON
        #[arg(long, short = 'j')]
        json: bool,
    },

    /// Back up a database now (pg_dump's custom format, checked after capture)
    #[command(name = "pg:backups:capture")]
    PgBackupsCapture {
        #[command(flatten)]
        app: AppFlags,
        /// The database: an attachment such as DATABASE (the default) or HEROKU_POSTGRESQL_AMBER
        #[arg(value_name = "DATABASE")]
        database: Option<String>,
    },

    /// Replace a database's data with a backup's (default: the newest)
    #[command(name = "pg:backups:restore")]
    PgBackupsRestore {
        #[command(flatten)]
        app: AppFlags,
        /// The backup, such as b001 (default: the newest)
        #[arg(value_name = "BACKUP")]
        backup: Option<String>,
        /// The database: an attachment such as DATABASE (the default) or HEROKU_POSTGRESQL_AMBER
        #[arg(value_name = "DATABASE")]
        database: Option<String>,
        /// The app's name again, to confirm
        #[arg(short = 'c', long, value_name = "APP")]
        confirm: Option<String>,
    },

    /// Download a backup (default: the newest) to latest.dump
    #[command(name = "pg:backups:download")]
    PgBackupsDownload {
        #[command(flatten)]
        app: AppFlags,
        #[arg(value_name = "BACKUP")]
        backup: Option<String>,
        /// Where to write it
        #[arg(short = 'o', long)]
        output: Option<String>,
    },

    /// Show a backup
    #[command(name = "pg:backups:info")]
    PgBackupsInfo {
        #[command(flatten)]
        app: AppFlags,
        #[arg(value_name = "BACKUP")]
        backup: Option<String>,
    },

    /// Delete a backup
    #[command(name = "pg:backups:delete")]
    PgBackupsDelete {
        #[command(flatten)]
        app: AppFlags,
        #[arg(value_name = "BACKUP")]
        backup: String,
        /// The app's name again, to confirm
        #[arg(short = 'c', long, value_name = "APP")]
        confirm: Option<String>,
    },

    /// Print the URL a backup is downloaded from
    #[command(name = "pg:backups:url")]
    PgBackupsUrl {
        #[command(flatten)]
        app: AppFlags,
        #[arg(value_name = "BACKUP")]
        backup: Option<String>,
    },

    /// Back up a database every day at an hour (UTC)
    #[command(name = "pg:backups:schedule")]
    PgBackupsSchedule {
        #[command(flatten)]
        app: AppFlags,
        /// The database: an attachment such as DATABASE (the default) or HEROKU_POSTGRESQL_AMBER
        #[arg(value_name = "DATABASE")]
        database: Option<String>,
        /// The hour, such as '02:00 UTC'
        #[arg(long, value_name = "HOUR")]
        at: String,
    },

    /// Stop a database's daily backups
    #[command(name = "pg:backups:unschedule")]
    PgBackupsUnschedule {
        #[command(flatten)]
        app: AppFlags,
        /// The database: an attachment such as DATABASE (the default) or HEROKU_POSTGRESQL_AMBER
        #[arg(value_name = "DATABASE")]
        database: Option<String>,
    },

    /// List an app's daily backup schedules
    #[command(name = "pg:backups:schedules")]
    PgBackupsSchedules {
        #[command(flatten)]
        app: AppFlags,
    },

    /// List a database's sessions and what they run
    #[command(name = "pg:ps")]
    PgPs {
        #[command(flatten)]
        app: AppFlags,
        /// The database: an attachment such as DATABASE (the default) or HEROKU_POSTGRESQL_AMBER
        #[arg(value_name = "DATABASE")]
        database: Option<String>,
    },

    /// Cancel a session's query, or end the session with --force
    #[command(name = "pg:kill")]
    PgKill {
        #[command(flatten)]
        app: AppFlags,
        /// The session's process id, from pg:ps
        #[arg(value_name = "PID")]
        pid: u32,
        /// The database (default: DATABASE)
        #[arg(value_name = "DATABASE")]
        database: Option<String>,
        /// End the session instead of cancelling its query
        #[arg(short = 'f', long)]
        force: bool,
    },

    /// Show a Redis: plan, version, memory against its limit, policy, clients, keys
    #[command(name = "redis:info", alias = "redis")]
    RedisInfo {
        #[command(flatten)]
        app: AppFlags,
        /// The Redis: an attachment such as REDIS (the default)
        #[arg(value_name = "REDIS")]
        redis: Option<String>,
    },

    /// Set what a Redis does when its memory is full
    #[command(name = "redis:maxmemory")]
    RedisMaxmemory {
        #[command(flatten)]
        app: AppFlags,
        #[arg(value_name = "REDIS")]
        redis: Option<String>,
        /// noeviction, allkeys-lru, allkeys-lfu, allkeys-random, volatile-lru, volatile-lfu, volatile-random or volatile-ttl
        #[arg(short = 'p', long)]
        policy: String,
    },

    /// Open redis-cli on a Redis, in a one-off dyno
    #[command(name = "redis:cli")]
    RedisCli {
        #[command(flatten)]
        app: AppFlags,
        /// The Redis: an attachment such as REDIS (the default)
        #[arg(value_name = "REDIS")]
        redis: Option<String>,
    },

    /// Give a Redis a new password (every attached app gets it; dynos restart)
    #[command(name = "redis:credentials")]
    RedisCredentials {
        #[command(flatten)]
        app: AppFlags,
        #[arg(value_name = "REDIS")]
        redis: Option<String>,
        /// Make a new password
        #[arg(long)]
        reset: bool,
        /// The app's name again, to confirm
        #[arg(short = 'c', long, value_name = "APP")]
        confirm: Option<String>,
    },

    /// List an app's scheduled jobs (after `kiln addons:create scheduler`)
    #[command(name = "schedules")]
    Schedules {
        #[command(flatten)]
        app: AppFlags,
        #[arg(long)]
        json: bool,
    },

    /// Schedule a command: "every 10 minutes", "hourly at :30", "daily at 02:00 UTC" or cron
    #[command(name = "schedules:add", trailing_var_arg = true)]
    SchedulesAdd {
        /// When it runs, e.g. "every 10 minutes" or "*/15 * * * *"
        schedule: String,
        /// Start a run even while the previous one is still going
        #[arg(long)]
        allow_overlap: bool,
        #[command(flatten)]
        app: AppFlags,
        /// The command (after `--`)
        #[arg(required = true, allow_hyphen_values = true, value_name = "COMMAND")]
        command: Vec<String>,
    },

    /// Remove a scheduled job
    #[command(name = "schedules:remove")]
    SchedulesRemove {
        id: String,
        #[command(flatten)]
        app: AppFlags,
    },

    /// Run a scheduled job now
    #[command(name = "schedules:run")]
    SchedulesRun {
        id: String,
        #[command(flatten)]
        app: AppFlags,
    },

    /// Show or set whether an app's dynos sleep when no request comes (eco dynos do), and when
    #[command(name = "ps:autosleep")]
    PsAutosleep {
        /// on, off, or default (sleep when the web dynos are eco, as on Heroku)
        #[arg(value_parser = ["on", "off", "default"])]
        mode: Option<String>,
        /// Idle time before the dynos sleep, such as 30m or 90s (default: the server's)
        #[arg(long, value_name = "DURATION")]
        after: Option<String>,
        /// Keep worker dynos running while the web dynos sleep
        #[arg(long, conflicts_with = "workers_sleep")]
        workers_stay: bool,
        /// Let worker dynos sleep with the web dynos (the default)
        #[arg(long)]
        workers_sleep: bool,
        #[command(flatten)]
        app: AppFlags,
    },

    /// Show whether an app is in maintenance mode
    #[command(name = "maintenance")]
    Maintenance {
        #[command(flatten)]
        app: AppFlags,
    },

    /// Put an app in maintenance mode: the router answers every request with a 503 page
    #[command(name = "maintenance:on")]
    MaintenanceOn {
        #[command(flatten)]
        app: AppFlags,
    },

    /// Take an app out of maintenance mode
    #[command(name = "maintenance:off")]
    MaintenanceOff {
        #[command(flatten)]
        app: AppFlags,
    },

    /// Run a one-off command in a dyno, attached to this terminal; exits with its status
    #[command(name = "run", trailing_var_arg = true)]
    Run {
        #[command(flatten)]
        app: AppFlags,
        /// Use pipes even when this is a terminal (for scripts and pipes)
        #[arg(long)]
        no_tty: bool,
        /// Extra environment for the dyno, KEY=VALUE (repeatable)
        #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Dyno size (e.g. standard-2x)
        #[arg(short = 's', long = "size")]
        size: Option<String>,
        /// The command (put `--` before it when it has flags of its own)
        #[arg(required = true, allow_hyphen_values = true, value_name = "COMMAND")]
        command: Vec<String>,
    },

    /// Run a one-off command in a dyno in the background; its output goes to the logs
    #[command(name = "run:detached", trailing_var_arg = true)]
    RunDetached {
        #[command(flatten)]
        app: AppFlags,
        /// Extra environment for the dyno, KEY=VALUE (repeatable)
        #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Dyno size (e.g. standard-2x)
        #[arg(short = 's', long = "size")]
        size: Option<String>,
        /// The command (put `--` before it when it has flags of its own)
        #[arg(required = true, allow_hyphen_values = true, value_name = "COMMAND")]
        command: Vec<String>,
    },

    /// Point the `kiln` git remote of this repository at an app, and set up git credentials
    #[command(name = "git:remote")]
    GitRemote {
        #[command(flatten)]
        app: AppFlags,
    },

    /// List an app's TLS certificates (served over HTTPS for the app's hostnames they cover)
    #[command(name = "certs", alias = "certs:list")]
    Certs {
        #[command(flatten)]
        app: AppFlags,
        /// Output as JSON
        #[arg(long, short = 'j')]
        json: bool,
    },

    /// Show a TLS certificate of an app
    #[command(name = "certs:info")]
    CertsInfo {
        #[command(flatten)]
        app: AppFlags,
        /// The certificate (needed when the app has several)
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Output as JSON
        #[arg(long, short = 'j')]
        json: bool,
    },

    /// Add a TLS certificate to an app: its chain (PEM, server certificate first) and key
    #[command(name = "certs:add")]
    CertsAdd {
        #[command(flatten)]
        app: AppFlags,
        #[arg(value_name = "CRT")]
        cert: String,
        #[arg(value_name = "KEY")]
        key: String,
    },

    /// Replace a TLS certificate of an app (a renewal) with a new chain and key
    #[command(name = "certs:update")]
    CertsUpdate {
        #[command(flatten)]
        app: AppFlags,
        #[arg(value_name = "CRT")]
        cert: String,
        #[arg(value_name = "KEY")]
        key: String,
        /// The certificate to replace (needed when the app has several)
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },

    /// Remove a TLS certificate from an app
    #[command(name = "certs:remove")]
    CertsRemove {
        #[command(flatten)]
        app: AppFlags,
        /// The certificate to remove (needed when the app has several)
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// The app's name again, to confirm
        #[arg(short = 'c', long, value_name = "APP")]
        confirm: Option<String>,
    },

    /// Show the status of Automatic Certificate Management (certificates from an ACME CA
    /// for the app's custom domains)
    #[command(name = "certs:auto")]
    CertsAuto {
        #[command(flatten)]
        app: AppFlags,
        /// Wait until every domain's certificate is issued (or failed)
        #[arg(long)]
        wait: bool,
    },

    /// Turn on Automatic Certificate Management: certificates for every custom domain,
    /// ordered from the server's ACME CA and renewed before they expire
    #[command(name = "certs:auto:enable")]
    CertsAutoEnable {
        #[command(flatten)]
        app: AppFlags,
    },

    /// Turn off Automatic Certificate Management; its certificates are removed
    #[command(name = "certs:auto:disable")]
    CertsAutoDisable {
        #[command(flatten)]
        app: AppFlags,
        /// The app's name again, to confirm
        #[arg(short = 'c', long, value_name = "APP")]
        confirm: Option<String>,
    },

    /// Order new certificates for every custom domain now (also retries failed ones)
    #[command(name = "certs:auto:refresh")]
    CertsAutoRefresh {
        #[command(flatten)]
        app: AppFlags,
    },

    /// A git credential helper that answers with the stored API key (used by git, not people)
    #[command(name = "git:credentials")]
    GitCredentials {
        /// The git credential operation: get, store or erase
        #[arg(value_name = "OPERATION")]
        operation: String,
    },
}

impl Cmd {
    /// Names and aliases that can start a command line. Used to tell whether the argument
    /// list we were given starts with the program name.
    pub fn is_command_word(word: &str) -> bool {
        use clap::CommandFactory;
        let cmd = Cli::command();
        word == "help"
            || cmd
                .get_subcommands()
                .any(|s| s.get_name() == word || s.get_all_aliases().any(|a| a == word))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kiln").chain(args.iter().copied()))
    }

    #[test]
    fn grammar_is_consistent() {
        Cli::command().debug_assert();
        assert!(Cmd::is_command_word("apps:create"));
        assert!(Cmd::is_command_word("rollback"));
        assert!(!Cmd::is_command_word("server"));
        assert!(!Cmd::is_command_word("/usr/bin/kiln"));
    }

    #[test]
    fn parses_heroku_style_lines() {
        match parse(&["config:set", "-a", "myapp", "A=1", "B=two=2"])
            .unwrap()
            .command
        {
            Cmd::ConfigSet { app, vars } => {
                assert_eq!(app.app.as_deref(), Some("myapp"));
                assert_eq!(vars, ["A=1", "B=two=2"]);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["ps:scale", "web-1", "worker=2:standard-2x", "--app", "x"])
            .unwrap()
            .command
        {
            Cmd::PsScale { changes, .. } => assert_eq!(changes, ["web-1", "worker=2:standard-2x"]),
            other => panic!("{other:?}"),
        }
        match parse(&["logs", "-n", "5", "-t", "-d", "web.1", "-s", "app"])
            .unwrap()
            .command
        {
            Cmd::Logs {
                num,
                tail,
                dyno,
                source,
                ..
            } => {
                assert_eq!(
                    (num, tail, dyno.as_deref(), source.as_deref()),
                    (5, true, Some("web.1"), Some("app"))
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["apps:destroy", "x", "--confirm", "x"])
                .unwrap()
                .command,
            Cmd::AppsDestroy { .. }
        ));
        match parse(&["domains:add", "www.example.com", "-a", "x"])
            .unwrap()
            .command
        {
            Cmd::DomainsAdd { app, hostname } => assert_eq!(
                (app.app.as_deref(), hostname.as_str()),
                (Some("x"), "www.example.com")
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["maintenance:on", "-a", "x"]).unwrap().command,
            Cmd::MaintenanceOn { .. }
        ));
        assert!(
            parse(&["domains:remove"]).is_err(),
            "a hostname is required"
        );
        assert!(parse(&["server"]).is_err(), "server belongs to the binary");
        assert!(parse(&["config:set"]).is_err());
        assert!(parse(&["logs", "-n", "many"]).is_err());
    }
}
