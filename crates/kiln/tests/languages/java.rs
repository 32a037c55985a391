//! Java (issue 16): a Maven app pushed with `git push`, built by the stack's JDK and Maven with
//! the local repository in the build cache, and served through the router by the jar its
//! Procfile runs; a `system.properties` asking for a Java the stack lacks fails the build
//! naming the versions it has, creates no release, and the running version keeps serving.
//!
//! Maven Central is out of reach of the test machine, so the app's `settings.xml` (which the
//! buildpack uses, as Heroku's does) mirrors every repository to Debian's
//! /usr/share/maven-repo, whose plugins are the ones Maven 3.8.7 defaults to.

use crate::common::*;
use std::path::PathBuf;
use std::time::Duration;

const POM: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://maven.apache.org/POM/4.0.0 http://maven.apache.org/xsd/maven-4.0.0.xsd">
  <modelVersion>4.0.0</modelVersion>
  <groupId>kiln.hello</groupId>
  <artifactId>hello</artifactId>
  <version>1.0</version>
  <packaging>jar</packaging>
  <properties>
    <maven.compiler.source>11</maven.compiler.source>
    <maven.compiler.target>11</maven.compiler.target>
    <project.build.sourceEncoding>UTF-8</project.build.sourceEncoding>
  </properties>
  <build>
    <finalName>app</finalName>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-jar-plugin</artifactId>
        <version>3.3.0</version>
        <configuration>
          <archive>
            <manifest>
              <mainClass>kiln.hello.Main</mainClass>
            </manifest>
          </archive>
        </configuration>
      </plugin>
    </plugins>
  </build>
</project>
"#;

/// Everything from Debian's repository, which has no checksum files.
const SETTINGS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<settings>
  <mirrors>
    <mirror>
      <id>debian</id>
      <mirrorOf>*</mirrorOf>
      <url>file:///usr/share/maven-repo</url>
    </mirror>
  </mirrors>
  <profiles>
    <profile>
      <id>debian</id>
      <repositories>
        <repository>
          <id>central</id>
          <url>file:///usr/share/maven-repo</url>
          <releases><checksumPolicy>ignore</checksumPolicy></releases>
          <snapshots><enabled>false</enabled></snapshots>
        </repository>
      </repositories>
      <pluginRepositories>
        <pluginRepository>
          <id>central</id>
          <url>file:///usr/share/maven-repo</url>
          <releases><checksumPolicy>ignore</checksumPolicy></releases>
          <snapshots><enabled>false</enabled></snapshots>
        </pluginRepository>
      </pluginRepositories>
    </profile>
  </profiles>
  <activeProfiles>
    <activeProfile>debian</activeProfile>
  </activeProfiles>
</settings>
"#;

const MAIN: &str = r#"package kiln.hello;

import com.sun.net.httpserver.HttpServer;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;

public class Main {
    public static void main(String[] args) throws Exception {
        int port = 5000;
        for (String a : args) {
            if (a.startsWith("--port=")) {
                port = Integer.parseInt(a.substring("--port=".length()));
            }
        }
        HttpServer server = HttpServer.create(new InetSocketAddress("0.0.0.0", port), 0);
        server.createContext("/", exchange -> {
            byte[] body = ("hello from java " + System.getProperty("java.version") + " on "
                    + System.getenv("DYNO") + "\n").getBytes(StandardCharsets.UTF_8);
            exchange.sendResponseHeaders(200, body.length);
            try (OutputStream out = exchange.getResponseBody()) {
                out.write(body);
            }
        });
        server.start();
        System.out.println("listening on " + port);
    }
}
"#;

fn java_app(name: &str) -> PathBuf {
    assert!(
        std::path::Path::new("/usr/bin/mvn").exists()
            && std::path::Path::new("/usr/share/maven-repo").is_dir(),
        "Maven is not installed: test.sh installs maven (with Debian's maven-repo) and openjdk-17-jdk-headless"
    );
    fixture_repo(
        name,
        &[
            ("pom.xml", POM),
            ("settings.xml", SETTINGS),
            ("src/main/java/kiln/hello/Main.java", MAIN),
            ("Procfile", "web: java -jar target/app.jar --port=$PORT\n"),
        ],
    )
}

fn wait_for_hello(s: &Server, app: &str) -> String {
    s.wait_for_app(app, Duration::from_secs(90), "the Java web dyno", || {
        let r = s.get(app, "/");
        (r.status == 200).then_some(r.body)
    })
}

#[test]
fn a_maven_app_builds_with_the_stacks_jdk_and_serves_its_jar() {
    let s = Server::start("lang-java");
    s.ok(&["apps:create", "javahello"]);
    let dir = java_app("java-app");
    let (ok, out) = s.push(&dir, "javahello");
    assert!(ok, "{out}");
    assert!(out.contains("Java app detected"), "{out}");
    assert!(
        out.contains("-----> Using Java ") && out.contains("from the stack (/usr/lib/jvm/"),
        "{out}"
    );
    assert!(out.contains("$ mvn -DskipTests package"), "{out}");
    assert!(out.contains("[INFO] BUILD SUCCESS"), "{out}");
    // The first build fills the local repository in the cache from the mirror.
    assert!(
        out.contains("Downloaded from debian: file:///usr/share/maven-repo/"),
        "{out}"
    );

    let body = wait_for_hello(&s, "javahello");
    assert!(
        body.starts_with("hello from java ") && body.contains(" on web.1"),
        "{body}"
    );
    // The web dyno's JVM got the heap cap for its size, and said so.
    let logs = s.wait_for_app(
        "javahello",
        Duration::from_secs(20),
        "the JVM's JAVA_TOOL_OPTIONS line",
        || {
            let l = s.logs("javahello");
            l.contains("Picked up JAVA_TOOL_OPTIONS: -Xmx").then_some(l)
        },
    );
    assert!(logs.contains("listening on "), "{logs}");

    // The jar stays in the slug; a one-off dyno has JAVA_HOME and the memory defaults in
    // JAVA_OPTS, but not in JAVA_TOOL_OPTIONS (as on Heroku).
    let out = s.ok(&[
        "run",
        "-a",
        "javahello",
        "--",
        "sh",
        "-c",
        "ls target/app.jar; echo \"home=$JAVA_HOME opts=$JAVA_OPTS tool=${JAVA_TOOL_OPTIONS:-none}\"",
    ]);
    assert!(out.contains("target/app.jar"), "{out}");
    assert!(out.contains("home=/usr/lib/jvm/"), "{out}");
    assert!(
        out.contains("-Xmx") && out.contains("-Dfile.encoding=UTF-8") && out.contains("tool=none"),
        "{out}"
    );

    // A second build finds every plugin in the cached local repository.
    commit_all(&dir, "build again");
    let (ok, out) = s.push(&dir, "javahello");
    assert!(ok, "{out}");
    assert!(out.contains("[INFO] BUILD SUCCESS"), "{out}");
    assert!(!out.contains("Downloaded from debian"), "{out}");
}

#[test]
fn a_java_version_the_stack_lacks_fails_naming_the_ones_it_has() {
    let s = Server::start("lang-java-version");
    s.ok(&["apps:create", "javaver"]);
    let dir = java_app("java-app-version");
    let (ok, out) = s.push(&dir, "javaver");
    assert!(ok, "{out}");
    let before = wait_for_hello(&s, "javaver");
    let releases = s.release_versions("javaver");

    // Java 8 is not on the stack (Debian 12 ships 17).
    std::fs::write(dir.join("system.properties"), "java.runtime.version=8\n").unwrap();
    commit_all(&dir, "ask for java 8");
    let (ok, out) = s.push(&dir, "javaver");
    assert!(!ok, "{out}");
    assert!(
        out.contains("Requested Java 8 (from system.properties), but this stack has: "),
        "{out}"
    );
    let line = out
        .lines()
        .find(|l| l.contains("but this stack has: "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("17."), "{line}");
    assert!(!out.contains("BUILD SUCCESS"), "{out}");
    assert_eq!(s.release_versions("javaver"), releases);
    let r = s.get("javaver", "/");
    assert_eq!((r.status, r.body.as_str()), (200, before.as_str()));

    // The stack's own major version builds.
    std::fs::write(dir.join("system.properties"), "java.runtime.version=17\n").unwrap();
    commit_all(&dir, "ask for java 17");
    let (ok, out) = s.push(&dir, "javaver");
    assert!(ok, "{out}");
    assert!(out.contains("-----> Using Java 17."), "{out}");
}
