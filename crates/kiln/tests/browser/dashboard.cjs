// The dashboard in a real browser (Debian's Chromium, driven by Playwright's playwright-core),
// run by tests/dashboard.rs, which starts the server and hands over what it set up in the
// environment. It goes through the dashboard as a person would: sign in, create an app,
// follow the Deploy page's commands with git, watch the build's output arrive, scale web to
// three on Resources, send traffic and find it on Metrics, set a config var, roll back from
// Activity, add a collaborator, watch the log tail, delete the app. Each page is checked for
// basic accessibility and written as a screenshot to $SHOTS. Any failure exits non-zero
// with the reason.
"use strict";
const { execFileSync, spawn } = require("child_process");
const fs = require("fs");
const http = require("http");
const path = require("path");
const { chromium } = require(process.env.PLAYWRIGHT);

const BASE = process.env.KILN_URL;
const ROUTER_PORT = parseInt(process.env.ROUTER_PORT, 10);
const EMAIL = process.env.EMAIL;
const PASSWORD = process.env.PASSWORD;
const COLLAB = process.env.COLLAB_EMAIL;
const APP_DIR = process.env.APP_DIR;
const SLOW_BP = process.env.SLOW_BUILDPACK;
const SHOTS = process.env.SHOTS;
const APP = "dash-app";
const env = {
  ...process.env,
  HOME: path.dirname(APP_DIR),
  PATH: `${process.env.KILN_BIN_DIR}:${process.env.PATH}`,
  GIT_TERMINAL_PROMPT: "0",
  GIT_CONFIG_NOSYSTEM: "1",
  KILN_API_URL: "",
};
delete env.KILN_API_KEY;

function log(...a) { console.log("[browser]", ...a); }
function fail(msg) { throw new Error(msg); }

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

// Basic accessibility: a language, one h1, every control labelled, buttons and links with
// text, and text that contrasts with what is behind it (WCAG AA: 4.5:1).
async function a11y(page, name) {
  const problems = await page.evaluate(() => {
    const out = [];
    if (!document.documentElement.lang) out.push("no lang");
    if (document.querySelectorAll("h1").length !== 1) out.push("h1 count " + document.querySelectorAll("h1").length);
    for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
      if (el.labels.length === 0 && !el.getAttribute("aria-label")) out.push("unlabelled " + el.outerHTML.slice(0, 80));
    }
    for (const el of document.querySelectorAll("button, a")) {
      if (!el.textContent.trim() && !el.getAttribute("aria-label")) out.push("empty " + el.outerHTML.slice(0, 80));
    }
    const rgb = (s) => (s.match(/[\d.]+/g) || []).map(Number);
    const lum = ([r, g, b]) => {
      const c = [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
      return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
    };
    const bg = (el) => {
      for (let e = el; e; e = e.parentElement) {
        const c = rgb(getComputedStyle(e).backgroundColor);
        if (c.length >= 3 && (c.length < 4 || c[3] > 0.5)) return c;
      }
      return [255, 255, 255];
    };
    for (const el of document.querySelectorAll("main a, main button, main th, main td, main p, main label, header a, .state, .notice")) {
      if (!el.offsetParent || !el.textContent.trim()) continue;
      const fg = lum(rgb(getComputedStyle(el).color));
      const b = lum(bg(el));
      const ratio = (Math.max(fg, b) + 0.05) / (Math.min(fg, b) + 0.05);
      if (ratio < 4.5) out.push(`contrast ${ratio.toFixed(2)} for ${el.tagName}.${el.className}: ${el.textContent.trim().slice(0, 30)}`);
    }
    return out;
  });
  if (problems.length) fail(`${name}: accessibility: ${problems.slice(0, 5).join("; ")}`);
}

async function visit(page, url, name) {
  const r = await page.goto(BASE + url);
  if (!r.ok()) fail(`${url}: ${r.status()}`);
  await a11y(page, name);
  await shot(page, name);
}

async function notice(page) {
  return (await page.locator(".notice").first().textContent({ timeout: 10000 })).trim();
}

function get(pathname) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port: ROUTER_PORT, path: pathname, headers: { Host: `${APP}.localhost` } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode));
    });
    req.on("error", reject);
  });
}

async function until(what, fn, ms = 60000, every = 250) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

(async () => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, headless: true, args: ["--no-sandbox"] });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  // The wrong password (401) and the unconfirmed delete (422) are answered with their
  // status on purpose; anything else the console reports is a defect.
  page.on("console", (m) => {
    if (m.type() === "error" && !/status of (401|422)/.test(m.text())) errors.push(m.text());
  });
  try {
    // Sign in: the root sends a stranger to the sign-in page.
    await page.goto(BASE + "/");
    if (!page.url().includes("/dashboard/login")) fail("/ did not ask to sign in: " + page.url());
    await a11y(page, "login");
    await shot(page, "login");
    await page.fill("#password", "not the password");
    await page.fill("#email", EMAIL);
    await page.click("button[type=submit]");
    if (!(await notice(page)).includes("Invalid credentials")) fail("a wrong password was not refused");
    await page.fill("#password", PASSWORD);
    await page.click("button[type=submit]");
    await page.waitForURL(BASE + "/dashboard");
    // Keyboard: the first Tab reaches "Skip to content".
    await page.keyboard.press("Tab");
    const first = await page.evaluate(() => document.activeElement.textContent);
    if (first !== "Skip to content") fail("first focus: " + first);
    log("signed in");

    // Create the app.
    await page.fill("#new-name", APP);
    await page.click("text=Create app");
    await page.waitForURL(`${BASE}/dashboard/apps/${APP}?done=created`);
    await a11y(page, "overview-empty");
    log("app created");

    // Settings: a slow buildpack, so the build's output is seen as it happens.
    await page.goto(`${BASE}/dashboard/apps/${APP}/settings`);
    await page.fill("#bp", SLOW_BP);
    await page.click("text=Save buildpacks");
    if (!(await notice(page)).includes("Buildpacks updated")) fail("buildpacks not saved");

    // Account: a key for git, shown once.
    await visit(page, "/dashboard/account", "account");
    await page.fill("#key-desc", "browser test");
    await page.click("text=Make a key");
    const made = await notice(page);
    const token = (made.match(/KILN-[0-9a-f]+|[0-9a-f-]{36}/) || [])[0];
    if (!token) fail("no key shown: " + made);
    log("key made");

    // Deploy: follow the page's commands.
    await visit(page, `/dashboard/apps/${APP}/deploy`, "deploy-before");
    const commands = (await page.locator("#deploy-commands").textContent()).trim().split("\n").map((l) => l.trim()).filter(Boolean);
    if (commands.length !== 3 || !commands[2].startsWith("git push")) fail("commands: " + commands.join(" | "));
    for (const c of commands.slice(0, 2)) {
      const [cmd, ...args] = c.split(/\s+/);
      const out = execFileSync(cmd, args, { cwd: APP_DIR, env, input: c.startsWith("kiln login") ? token + "\n" : "", encoding: "utf8", stdio: ["pipe", "pipe", "pipe"] });
      log(c, "→", out.trim());
    }
    const [gitCmd, ...gitArgs] = commands[2].split(/\s+/);
    const push = spawn(gitCmd, gitArgs, { cwd: APP_DIR, env });
    let pushOut = "";
    push.stdout.on("data", (d) => (pushOut += d));
    push.stderr.on("data", (d) => (pushOut += d));
    const pushed = new Promise((resolve) => push.on("close", resolve));
    // The build appears on the Deploy page (its list refreshes) and its output streams in
    // while the build is still running.
    const pre = page.locator("pre.build-output[data-stream]");
    await pre.waitFor({ timeout: 60000 });
    await until("live build output", async () => {
      const t = await pre.textContent();
      return t.includes("slow step 3") && !(await pre.getAttribute("data-finished"));
    });
    await shot(page, "deploy-building");
    log("saw the build output live");
    const code = await pushed;
    if (code !== 0) fail("git push failed: " + pushOut);
    await until("the build to succeed", async () => (await page.locator("table[data-builds] .state").first().textContent()) === "succeeded", 60000);
    await a11y(page, "deploy");
    await shot(page, "deploy");

    // Resources: web to 3.
    await visit(page, `/dashboard/apps/${APP}/resources`, "resources-before");
    await page.fill("#q-web", "3");
    await page.click("text=Save web");
    if (!(await notice(page)).includes("Formation updated")) fail("not scaled");
    await until("three web dynos up", async () => (await page.locator('tr[data-dyno^="web."] .state.up').count()) === 3, 90000);
    await shot(page, "resources");
    log("three dynos up");

    // Traffic, then the Metrics page shows it.
    let ok = 0;
    for (let i = 0; i < 60; i++) if ((await get(`/m${i}`)) === 200) ok++;
    if (ok !== 60) fail(`only ${ok} of 60 requests answered 200`);
    await page.goto(`${BASE}/dashboard/apps/${APP}/metrics`);
    await until("the traffic on the Metrics page", async () => {
      await page.reload();
      const n = parseInt(await page.locator("#metrics-summary").getAttribute("data-requests"), 10);
      return n >= 60;
    }, 60000, 1000);
    if ((await page.locator("#charts svg.chart rect.s2").count()) === 0) fail("no 2xx bars on the throughput chart");
    if ((await page.locator("#charts svg.chart line.ev-deploy").count()) === 0) fail("no deploy marked on the charts");
    await a11y(page, "metrics");
    await shot(page, "metrics");
    log("metrics show the traffic");

    // A config var: a new release.
    await visit(page, `/dashboard/apps/${APP}/settings`, "settings");
    await page.fill("#cv-key", "GREETING_TEST");
    await page.fill("#cv-value", "from the browser");
    await page.click("button:text-is('Set')");
    if (!(await notice(page)).includes("Config vars updated")) fail("config not set");
    await page.click("text=Reveal config vars");
    await page.locator('tr[data-var="GREETING_TEST"]').waitFor();
    // The config's release goes live once the dynos restarted with it.
    await page.goto(`${BASE}/dashboard/apps/${APP}/activity`);
    await until("the config's release to go live", async () => {
      await page.reload();
      return (await page.locator("tr[data-release]").first().textContent()).includes("succeeded");
    }, 60000, 500);
    await visit(page, `/dashboard/apps/${APP}/activity`, "activity");
    const topDesc = await page.locator("tr[data-release]").first().textContent();
    if (!topDesc.includes("GREETING_TEST")) fail("no release for the config var: " + topDesc);
    const before = await page.locator("tr[data-release]").count();

    // Roll back to the release before it.
    await page.locator("tr[data-release] button").first().click();
    if (!(await notice(page)).includes("Rolled back")) fail("no rollback");
    const after = await page.locator("tr[data-release]").count();
    const top = await page.locator("tr[data-release]").first().textContent();
    if (after !== before + 1 || !/Rollback/i.test(top)) fail(`rollback release missing: ${before} → ${after}: ${top}`);
    await shot(page, "activity-rolled-back");
    log("rolled back");

    // A collaborator.
    await visit(page, `/dashboard/apps/${APP}/access`, "access-before");
    await page.fill("#collab-email", COLLAB);
    await page.click("text=Add collaborator");
    if (!(await notice(page)).includes("Collaborator added")) fail("collaborator not added");
    await page.locator(`tr[data-email="${COLLAB}"]`).waitFor();
    await shot(page, "access");

    // The live log tail.
    await visit(page, `/dashboard/apps/${APP}/logs`, "logs");
    await page.locator("#log[data-live]").waitFor({ timeout: 30000 });
    const marker = "/tail-" + Date.now();
    await until("the request in the live tail", async () => {
      await get(marker);
      return (await page.locator("#log").textContent()).includes(marker);
    }, 30000, 1000);
    await shot(page, "logs-live");
    log("tail is live");

    // A phone: nothing wider than the screen.
    const phone = await browser.newContext({ viewport: { width: 375, height: 740 }, storageState: await context.storageState() });
    const p2 = await phone.newPage();
    for (const [url, name] of [["/dashboard", "phone-apps"], [`/dashboard/apps/${APP}/resources`, "phone-resources"], [`/dashboard/apps/${APP}/metrics`, "phone-metrics"]]) {
      await p2.goto(BASE + url);
      const wide = await p2.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      if (wide > 1) fail(`${url} is ${wide}px wider than a phone`);
      await shot(p2, name);
    }
    await phone.close();

    // Delete, with the name typed to confirm.
    await page.goto(`${BASE}/dashboard/apps/${APP}/settings`);
    await page.fill("#confirm", "not-the-name");
    await page.click("text=Delete app");
    if (!(await notice(page)).includes("Type the app's name")) fail("deleted without confirmation");
    await page.fill("#confirm", APP);
    await page.click("text=Delete app");
    await page.waitForURL(`${BASE}/dashboard?done=deleted`);
    if ((await page.locator(`tr[data-app="${APP}"]`).count()) !== 0) fail("the app is still listed");
    await shot(page, "apps-after-delete");
    log("deleted");

    if (errors.length) fail("the page reported errors: " + errors.join("; "));
    await browser.close();
    log("ok");
  } catch (e) {
    try { await shot(page, "failure"); } catch (_) { /* best effort */ }
    console.error("[browser] FAILED:", e.message, "at", page.url());
    await browser.close();
    process.exit(1);
  }
})();
