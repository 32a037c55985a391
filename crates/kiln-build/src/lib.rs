//! The builder: turns an app's source into a slug with classic buildpacks, the way Heroku's
//! slug compiler does.
//!
//! 1. The source (already checked out into a scratch directory by the caller) loses what
//!    `.slugignore` names.
//! 2. Buildpacks are resolved: the app's list (built-in names, server directories, git URLs),
//!    or, when it has none, every built-in buildpack in detection order (Ruby, Node.js, Python,
//!    Java, PHP, Go, static sites, Procfile: [`BUILTIN`]) and the first whose `bin/detect`
//!    accepts the app. The built-ins are shell scripts under `buildpacks/`, compiled into the
//!    binary, that build with the server's own languages (the stack).
//! 3. A build dyno (same runtime as app dynos, build directory at `/app`) runs the driver
//!    script, which runs `bin/detect`, `bin/compile BUILD_DIR CACHE_DIR ENV_DIR` and
//!    `bin/release` of each buildpack, streaming output back line by line.
//! 4. The Procfile (parsed strictly: a malformed line fails the build) and the buildpacks'
//!    `default_process_types` give the process types; the build directory is packed into a
//!    content-addressed, gzipped tarball.
//!
//! Built-in and user buildpacks go through exactly the same mechanism.

pub mod slug;
pub mod slugignore;

use kiln_model::buildpack::{BUILTIN, BuildpackRef, parse_release_output};
use kiln_model::config::ConfigVars;
use kiln_model::procfile::{self, ProcessTypes};
use kiln_runtime::{AppDir, Bind, DynoSpec, Limits, SharedRuntime};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The build failed: why, in a sentence for the pusher (the git receiver shows it as a
    /// `remote: !` line).
    #[error("{0}")]
    Failed(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BuildError {
    let context = context.into();
    move |source| BuildError::Io { context, source }
}

/// Where build output goes, line by line, as it happens.
pub trait BuildOutput: Send + Sync {
    fn line(&self, line: &str);
}

impl<F: Fn(&str) + Send + Sync> BuildOutput for F {
    fn line(&self, line: &str) {
        self(line)
    }
}

pub struct BuilderConfig {
    /// The server's data directory: `builds/` (scratch), `cache/` (per app), `slugs/`,
    /// `buildpacks/` (built-in ones, git clones).
    pub data_dir: PathBuf,
    /// A build that runs longer is killed (Heroku: 15 minutes).
    pub timeout: Duration,
    /// Memory a build dyno may use: a hard limit, enforced by the runtime's cgroups (a build
    /// that passes it is OOM-killed and fails with a message saying so).
    pub memory_bytes: u64,
    pub stack: String,
    /// The largest compressed slug a build may produce (Heroku: 500 MB).
    pub max_slug_bytes: u64,
}

pub struct Builder {
    config: BuilderConfig,
    runtime: SharedRuntime,
}

pub struct BuildRequest {
    pub build_id: String,
    pub app_id: String,
    pub uid: Option<u32>,
    /// The checked-out source; becomes the build directory (and is removed afterwards).
    pub source_dir: PathBuf,
    pub source_version: Option<String>,
    pub config: ConfigVars,
    /// Buildpack URLs; empty means detect among the built-in ones.
    pub buildpacks: Vec<String>,
    /// Initial formation quantities from app.json, if the source has one.
    pub app_json: Option<kiln_model::appjson::AppJson>,
}

/// What a successful build produced.
#[derive(Debug, Clone)]
pub struct BuiltSlug {
    pub checksum: String,
    pub size: u64,
    pub process_types: ProcessTypes,
    pub buildpack_description: String,
    pub app_json: Option<kiln_model::appjson::AppJson>,
    /// The add-ons the buildpacks' `bin/release` ask for (provisioned on a first deploy).
    pub release_addons: Vec<String>,
}

const DRIVER: &str = include_str!("../buildpacks/driver.sh");

struct BuiltinFile {
    pack: &'static str,
    /// Relative to the buildpack's directory, such as `bin/compile`.
    path: &'static str,
    content: &'static str,
}

/// The built-in buildpacks' files, compiled into the binary so that a Kiln server is one file.
macro_rules! builtin_files {
    ($($pack:literal => [$($path:literal),* $(,)?]),* $(,)?) => {
        &[$($(BuiltinFile {
            pack: $pack,
            path: $path,
            content: include_str!(concat!("../buildpacks/", $pack, "/", $path)),
        }),*),*]
    };
}

const BUILTIN_FILES: &[BuiltinFile] = builtin_files! {
    "ruby" => ["bin/detect", "bin/compile", "bin/release"],
    "nodejs" => ["bin/detect", "bin/compile", "bin/release"],
    "python" => ["bin/detect", "bin/compile", "bin/release"],
    "go" => ["bin/detect", "bin/compile", "bin/release"],
    "java" => ["bin/detect", "bin/compile", "bin/release"],
    "php" => ["bin/detect", "bin/compile", "bin/release"],
    "static" => ["bin/detect", "bin/compile", "bin/release"],
    "procfile" => ["bin/detect", "bin/compile", "bin/release"],
};

fn write_exec(path: &Path, content: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::write(path, content)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

fn copy_dir(src: &Path, dst: &Path) -> std::io::Result<()> {
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(dst)
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

fn chown_tree(dir: &Path, uid: u32) -> std::io::Result<()> {
    let out = std::process::Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{uid}"))
        .arg(dir)
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

impl Builder {
    /// Installs the built-in buildpacks under the data directory.
    pub fn new(config: BuilderConfig, runtime: SharedRuntime) -> Result<Builder, BuildError> {
        let builtin = config.data_dir.join("buildpacks/builtin");
        for f in BUILTIN_FILES {
            let path = builtin.join(f.pack).join(f.path);
            write_exec(&path, f.content).map_err(io_err(format!(
                "installing built-in buildpack {}",
                path.display()
            )))?;
        }
        std::fs::create_dir_all(config.data_dir.join("builds"))
            .map_err(io_err("creating the builds directory"))?;
        Ok(Builder { config, runtime })
    }

    pub fn slugs_dir(&self) -> PathBuf {
        self.config.data_dir.join("slugs")
    }

    /// A fresh scratch directory for a build's source.
    pub fn scratch_dir(&self, build_id: &str) -> PathBuf {
        self.config.data_dir.join("builds").join(build_id)
    }

    /// Removes scratch directories of builds interrupted by a crash.
    pub fn sweep(&self) {
        if let Ok(entries) = std::fs::read_dir(self.config.data_dir.join("builds")) {
            for e in entries.flatten() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// Drops an app's build cache (app destroyed).
    pub fn remove_cache(&self, app_id: &str) {
        let _ = std::fs::remove_dir_all(self.config.data_dir.join("cache").join(app_id));
    }

    /// Resolves buildpack references into numbered directories under `dest`.
    async fn stage_buildpacks(
        &self,
        urls: &[String],
        dest: &Path,
        out: &dyn BuildOutput,
    ) -> Result<(), BuildError> {
        let builtin = self.config.data_dir.join("buildpacks/builtin");
        let refs: Vec<BuildpackRef> = if urls.is_empty() {
            BUILTIN
                .iter()
                .map(|b| BuildpackRef::Builtin(b.to_string()))
                .collect()
        } else {
            urls.iter()
                .map(|u| BuildpackRef::parse(u).map_err(|e| BuildError::Failed(e.message)))
                .collect::<Result<_, _>>()?
        };
        for (i, r) in refs.iter().enumerate() {
            let target = dest.join(format!("{:02}", i + 1));
            let label = match r {
                BuildpackRef::Builtin(name) => {
                    copy_dir(&builtin.join(name), &target)
                        .map_err(io_err(format!("staging buildpack {name}")))?;
                    format!("heroku/{name}")
                }
                BuildpackRef::Local(dir) => {
                    if !Path::new(dir).join("bin/compile").is_file() {
                        return Err(BuildError::Failed(format!(
                            "Buildpack {dir} has no bin/compile"
                        )));
                    }
                    copy_dir(Path::new(dir), &target)
                        .map_err(io_err(format!("copying buildpack {dir}")))?;
                    dir.clone()
                }
                BuildpackRef::Git { url, reference } => {
                    out.line(&format!("-----> Fetching buildpack {url}"));
                    let mut cmd = tokio::process::Command::new("git");
                    cmd.args(["clone", "--quiet", "--depth", "1"]);
                    if let Some(r) = reference {
                        cmd.args(["--branch", r]);
                    }
                    cmd.arg("--")
                        .arg(url)
                        .arg(&target)
                        .env("GIT_TERMINAL_PROMPT", "0");
                    let res = tokio::time::timeout(Duration::from_secs(120), cmd.output()).await;
                    match res {
                        Ok(Ok(o)) if o.status.success() => {}
                        Ok(Ok(o)) => {
                            return Err(BuildError::Failed(format!(
                                "Could not fetch buildpack {url}: {}",
                                String::from_utf8_lossy(&o.stderr).trim()
                            )));
                        }
                        Ok(Err(e)) => {
                            return Err(BuildError::Failed(format!(
                                "Could not run git to fetch buildpack {url}: {e}"
                            )));
                        }
                        Err(_) => {
                            return Err(BuildError::Failed(format!(
                                "Fetching buildpack {url} took longer than 2 minutes"
                            )));
                        }
                    }
                    url.clone()
                }
            };
            std::fs::write(target.join(".kiln-url"), &label)
                .map_err(io_err("labelling a buildpack"))?;
        }
        Ok(())
    }

    /// Runs a build. Output goes to `out` as it happens; the scratch directory is removed
    /// whatever the outcome.
    pub async fn build(
        &self,
        req: BuildRequest,
        out: &dyn BuildOutput,
    ) -> Result<BuiltSlug, BuildError> {
        let scratch = req
            .source_dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.scratch_dir(&req.build_id));
        let result = self.build_inner(&req, &scratch, out).await;
        let _ = std::fs::remove_dir_all(&scratch);
        result
    }

    async fn build_inner(
        &self,
        req: &BuildRequest,
        scratch: &Path,
        out: &dyn BuildOutput,
    ) -> Result<BuiltSlug, BuildError> {
        let app = &req.source_dir;
        out.line(&format!(
            "-----> Building on the {} stack",
            self.config.stack
        ));

        let failed = |e: AppFileError| BuildError::Failed(format!("{e}"));
        if let Some(text) = read_app_file(app, ".slugignore").map_err(failed)? {
            let n = slugignore::SlugIgnore::parse(&text)
                .apply(app)
                .map_err(io_err("applying .slugignore"))?;
            out.line(&format!("-----> Removed {n} paths listed in .slugignore"));
        }

        // Fail early on a malformed Procfile: nothing is worth compiling for an app that
        // cannot be run.
        let procfile = if let Some(text) = read_app_file(app, "Procfile").map_err(failed)? {
            let p =
                procfile::parse(&text).map_err(|e| BuildError::Failed(format!("{}", e.message)))?;
            for w in &p.warnings {
                out.line(&format!(" !     Warning: {w}"));
            }
            Some(p)
        } else {
            None
        };

        let env_dir = scratch.join("env");
        let bp_dir = scratch.join("buildpacks");
        let out_dir = scratch.join("out");
        let cache_dir = self.config.data_dir.join("cache").join(&req.app_id);
        for d in [&env_dir, &bp_dir, &out_dir, &cache_dir] {
            std::fs::create_dir_all(d).map_err(io_err(format!("creating {}", d.display())))?;
        }
        for (k, v) in &req.config {
            std::fs::write(env_dir.join(k), v).map_err(io_err("writing the env dir"))?;
        }
        self.stage_buildpacks(&req.buildpacks, &bp_dir, out).await?;
        write_exec(&bp_dir.join("driver.sh"), DRIVER)
            .map_err(io_err("writing the build driver"))?;
        if let Some(uid) = req.uid {
            for d in [app, &bp_dir, &out_dir, &cache_dir] {
                chown_tree(d, uid)
                    .map_err(io_err(format!("handing {} to the app's user", d.display())))?;
            }
        }

        let binds = vec![
            Bind {
                host: cache_dir.clone(),
                target: "/kiln/cache".into(),
                writable: true,
            },
            Bind {
                host: env_dir.clone(),
                target: "/kiln/env".into(),
                writable: false,
            },
            Bind {
                host: bp_dir.clone(),
                target: "/kiln/buildpacks".into(),
                writable: true,
            },
            Bind {
                host: out_dir.clone(),
                target: "/kiln/out".into(),
                writable: true,
            },
        ];
        let rt = &self.runtime;
        let build_dir = rt.visible_path(&Bind {
            host: app.clone(),
            target: "/app".into(),
            writable: true,
        });
        let mut env = vec![
            ("BUILD_DIR".to_string(), build_dir.clone()),
            ("CACHE_DIR".to_string(), rt.visible_path(&binds[0])),
            ("ENV_DIR".to_string(), rt.visible_path(&binds[1])),
            ("BUILDPACKS_DIR".to_string(), rt.visible_path(&binds[2])),
            ("OUT_DIR".to_string(), rt.visible_path(&binds[3])),
            (
                "KILN_DETECT".to_string(),
                if req.buildpacks.is_empty() { "1" } else { "0" }.to_string(),
            ),
            ("STACK".to_string(), self.config.stack.clone()),
            ("HOME".to_string(), "/tmp".to_string()),
            (
                "PATH".to_string(),
                "/usr/local/bin:/usr/bin:/bin".to_string(),
            ),
            ("LANG".to_string(), "C.UTF-8".to_string()),
        ];
        if let Some(v) = &req.source_version {
            env.push(("SOURCE_VERSION".to_string(), v.clone()));
        }
        let spec = DynoSpec {
            id: uuid::Uuid::new_v4().to_string(),
            app_id: req.app_id.clone(),
            name: "build".into(),
            command: format!("exec bash {}/driver.sh", rt.visible_path(&binds[2])),
            env,
            app_dir: AppDir::Writable(app.clone()),
            binds,
            uid: req.uid,
            limits: Limits {
                memory_bytes: Some(self.config.memory_bytes),
                memory_hard_bytes: Some(self.config.memory_bytes),
                max_processes: Some(4096),
                cpu_share: None,
            },
            stdin: false,
            tty: false,
            ..Default::default()
        };
        let mut dyno = rt
            .start(spec)
            .map_err(|e| BuildError::Failed(format!("Could not start the build: {e}")))?;
        let stdout = dyno.stdout.take();
        let stderr = dyno.stderr.take();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let pump = |r: Option<kiln_runtime::output::Output>,
                    tx: tokio::sync::mpsc::UnboundedSender<String>| {
            tokio::spawn(async move {
                let Some(r) = r else { return };
                kiln_runtime::output::for_each_message(r, |m| {
                    let _ = tx.send(m);
                })
                .await;
            })
        };
        let p1 = pump(stdout, tx.clone());
        let p2 = pump(stderr, tx);
        let signaller = dyno.signaller();
        let waited = tokio::time::timeout(self.config.timeout, async {
            // Output is forwarded while the build runs; the channel closes when both pipes do.
            while let Some(line) = rx.recv().await {
                out.line(&line);
            }
            dyno.wait().await
        })
        .await;
        let code = match waited {
            Ok(code) => code,
            Err(_) => {
                signaller.kill();
                let _ = dyno.wait().await;
                p1.abort();
                p2.abort();
                return Err(BuildError::Failed(format!(
                    "Build timed out after {}",
                    human_duration(self.config.timeout)
                )));
            }
        };
        let _ = tokio::join!(p1, p2);
        if code != 0 {
            // The cgroup's final reading says whether the kernel killed something at the
            // limit (the buildpack may report that as any exit status).
            let memory = dyno.memory();
            let mb = self.config.memory_bytes / (1024 * 1024);
            return Err(BuildError::Failed(match (memory, code) {
                (Some(m), _) if m.oom_kills > 0 => {
                    format!("Build exceeded its memory limit of {mb} MB")
                }
                (None, 137) => "Build was killed (out of memory?)".to_string(),
                _ => format!("Build failed (exit status {code})"),
            }));
        }

        // Written by the buildpacks, inside the build container, as the app's user: read as
        // carefully as the app's own files.
        let detected = read_app_file(&out_dir, "detected")
            .map_err(failed)?
            .unwrap_or_default();
        let buildpack_description = detected
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join(", ");
        let mut defaults = ProcessTypes::new();
        let mut release_addons = Vec::new();
        for i in 1..=32 {
            let Some(text) =
                read_app_file(&out_dir, &format!("release-{i}.yml")).map_err(failed)?
            else {
                continue;
            };
            let types = parse_release_output(&text)
                .map_err(|e| BuildError::Failed(format!("{}", e.message)))?;
            // With several buildpacks, the first to declare a process type gives its
            // command (the rule; a later buildpack only adds types).
            for (name, command) in types {
                defaults.entry(name).or_insert(command);
            }
            for a in kiln_model::buildpack::parse_release_addons(&text)
                .map_err(|e| BuildError::Failed(e.message))?
            {
                if !release_addons.contains(&a) {
                    release_addons.push(a);
                }
            }
        }
        out.line("-----> Discovering process types");
        let mut process_types = defaults.clone();
        if let Some(p) = &procfile {
            process_types.extend(p.types.clone());
            let names: Vec<&str> = p.types.keys().map(String::as_str).collect();
            out.line(&format!(
                "       Procfile declares types -> {}",
                if names.is_empty() {
                    "(none)".to_string()
                } else {
                    names.join(", ")
                }
            ));
        }
        if !defaults.is_empty() {
            let names: Vec<&str> = defaults.keys().map(String::as_str).collect();
            out.line(&format!(
                "       Default types for buildpack -> {}",
                names.join(", ")
            ));
        }
        if process_types.is_empty() {
            out.line(" !     No process types: add a Procfile (e.g. `web: python app.py`) so Kiln knows how to run the app.");
        }

        out.line("-----> Compressing...");
        let app_owned = app.clone();
        let slugs = self.slugs_dir();
        // The build directory is owned by the app's user; packing normalises ownership.
        let max_slug = self.config.max_slug_bytes;
        let packed = tokio::task::spawn_blocking(move || slug::pack(&app_owned, &slugs, max_slug))
            .await
            .map_err(|e| BuildError::Failed(format!("slug packing panicked: {e}")))?
            .map_err(|e| match e {
                slug::PackError::TooLarge { limit } => BuildError::Failed(format!(
                    "Compiled slug size is over the {} MB limit (the server's --max-slug-mb). Add what the app does not need at run time to .slugignore.",
                    limit / (1024 * 1024)
                )),
                slug::PackError::Io(e) => BuildError::Failed(format!("Could not compress the slug: {e}")),
            })?;
        out.line(&format!("       Done: {}", human_size(packed.size)));
        Ok(BuiltSlug {
            checksum: packed.checksum,
            size: packed.size,
            process_types,
            buildpack_description: if buildpack_description.is_empty() {
                "Custom".into()
            } else {
                buildpack_description
            },
            app_json: req.app_json.clone(),
            release_addons,
        })
    }
}

/// The largest file of the app's that Kiln reads itself (Procfile, app.json, .slugignore,
/// what buildpacks report): these are small, and are read into the server's memory.
const MAX_APP_FILE: u64 = 1024 * 1024;

/// Why one of the app's own files could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AppFileError {
    #[error(
        "{0} must be a regular file in the app (a symbolic link may point only inside the app)"
    )]
    NotAFile(String),
    #[error("{name} is larger than {} KB", MAX_APP_FILE / 1024)]
    TooLarge { name: String },
    #[error("{0} is not valid UTF-8")]
    NotUtf8(String),
    #[error("reading {name}: {source}")]
    Io {
        name: String,
        source: std::io::Error,
    },
}

/// Reads `dir/name`, a file the app (or a buildpack, as the app's user) wrote, which the
/// server reads as root: `None` if it does not exist. A symbolic link is followed only to a
/// file inside `dir` (`Procfile -> config/Procfile`); one that leads out of it is refused:
/// `Procfile -> /etc/shadow` would otherwise be read with the server's rights and its lines
/// shown back to the pusher. Nothing else writes to `dir` while the server reads it (the
/// build's container has not started, or has exited). The size is bounded before anything
/// is read.
pub fn read_app_file(dir: &Path, name: &str) -> Result<Option<String>, AppFileError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut path = dir.join(name);
    let io = |source| AppFileError::Io {
        name: name.to_string(),
        source,
    };
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    if meta.file_type().is_symlink() {
        let inside = std::fs::canonicalize(dir).map_err(io)?;
        path = match std::fs::canonicalize(&path) {
            Ok(target) if target.starts_with(&inside) && target.is_file() => target,
            _ => return Err(AppFileError::NotAFile(name.to_string())),
        };
    } else if !meta.is_file() {
        return Err(AppFileError::NotAFile(name.to_string()));
    }
    // O_NOFOLLOW: the file cannot be swapped for a link between the check and the open.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_APP_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_APP_FILE {
        return Err(AppFileError::TooLarge {
            name: name.to_string(),
        });
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| AppFileError::NotUtf8(name.to_string()))
}

pub fn human_size(bytes: u64) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.1}M", bytes as f64 / 1024.0 / 1024.0)
    } else {
        format!("{:.1}K", bytes as f64 / 1024.0)
    }
}

fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && s % 60 == 0 {
        format!("{} minutes", s / 60)
    } else {
        format!("{s} seconds")
    }
}
