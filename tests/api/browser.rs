//! The back office in a real browser: headless Chromium driven over WebDriver (Debian's
//! `chromium` and `chromium-driver`; `.ci/run` installs them). Leaves a screenshot of every
//! page under `target/admin-screenshots/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use storage::records::Role;

use crate::helpers::{spawn_app, TestApp, PASSWORD};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// chromedriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver() -> Driver {
    assert!(
        std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists(),
        "the browser test needs Debian's chromium and chromium-driver: apt-get install chromium chromium-driver"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Owned by the guard at once: killed and reaped however this ends.
    let driver = Driver {
        child: Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
        url: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return driver;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not listen on {port}");
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1366,1000"]
        }),
    );
    ClientBuilder::native()
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

fn screenshots_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/admin-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshots_dir().join(format!("{name}.png")), png).unwrap();
}

/// Waits until the element `css` reads (or, with `exact` false, contains) `want`: after a click or a submit the old page may
/// still be there (or go stale mid-read) for a moment.
async fn wait_text(c: &Client, css: &str, want: &str, exact: bool) {
    let mut seen = String::new();
    for _ in 0..100 {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            if let Ok(t) = e.text().await {
                if t == want || (!exact && t.contains(want)) {
                    return;
                }
                seen = t;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css} never read {want:?} (last: {seen:?})");
}

async fn wait_heading(c: &Client, want: &str) {
    wait_text(c, "main h1", want, true).await;
}

async fn customer_with_ticket(app: &TestApp) -> (String, String, String) {
    let (token, user_id) = app.new_user().await;
    let r = app
        .post_json(
            "/api/v1/tickets",
            Some(&token),
            &json!({"subject": "Export fails", "description": "Since Monday"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let ticket = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    (token, user_id, ticket)
}

#[actix_web::test]
async fn an_admin_works_through_the_back_office_in_chromium() {
    let app = spawn_app().await;
    let admin = app.account(Role::Admin).await;
    let (token, user_id, ticket) = customer_with_ticket(&app).await;
    let driver = start_driver().await;
    let c = browser(&driver).await;

    c.goto(&app.url("/admin/login")).await.unwrap();
    shot(&c, "00-login").await;
    let form = c.form(Locator::Css("form")).await.unwrap();
    form.set_by_name("email", &admin).await.unwrap();
    form.set_by_name("password", PASSWORD).await.unwrap();
    form.submit().await.unwrap();
    wait_heading(&c, "Dashboard").await;

    open_every_menu(&c).await;
    adjust_credits(&c, &app, &user_id).await;
    assert_eq!(app.balance(&token).await, signup_grant(&app) + 75);
    move_ticket(&c, &app, &ticket).await;
    flip_toggle(&c, &app).await;

    c.find(Locator::Css("form.logout button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("main.login"))
        .await
        .unwrap();
    shot(&c, "99-logged-out").await;
    c.goto(&app.url("/admin/users")).await.unwrap();
    assert!(c
        .current_url()
        .await
        .unwrap()
        .path()
        .ends_with("/admin/login"));
    c.close().await.unwrap();
    app.assert_verified();
}

fn signup_grant(app: &TestApp) -> u64 {
    app.state.config.file.credits.signup_grant
}

async fn open_every_menu(c: &Client) {
    let menus = [
        "Dashboard",
        "Workbenches",
        "Projects",
        "Brand Kits",
        "Generation Requests",
        "Credits",
        "Users",
        "Invoices",
        "Helpdesk",
        "Settings",
    ];
    for (i, label) in menus.iter().enumerate() {
        c.find(Locator::LinkText(label))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_heading(c, label).await;
        shot(
            c,
            &format!("{:02}-{}", i + 1, label.to_lowercase().replace(' ', "-")),
        )
        .await;
    }
}

async fn adjust_credits(c: &Client, app: &TestApp, user_id: &str) {
    c.goto(&app.url(&format!("/admin/users/{user_id}")))
        .await
        .unwrap();
    let form = c
        .form(Locator::Css("form[action$='/credits']"))
        .await
        .unwrap();
    form.set_by_name("amount", "75").await.unwrap();
    form.set_by_name("reason", "Browser test goodwill")
        .await
        .unwrap();
    form.submit().await.unwrap();
    wait_text(c, "#balance", &(signup_grant(app) + 75).to_string(), true).await;
    shot(c, "20-user-form").await;
}

/// One card moved by drag and drop (the page's script), the same card moved on by its stage
/// menu (what works without JavaScript).
async fn move_ticket(c: &Client, app: &TestApp, ticket: &str) {
    c.goto(&app.url("/admin/tickets/kanban")).await.unwrap();
    shot(c, "30-tickets-kanban").await;
    // WebDriver cannot drive native HTML5 drag and drop; the same events are dispatched.
    let drag = r#"
        const card = document.getElementById(arguments[0]);
        const column = document.querySelector('.kanban .column[data-stage="in_progress"]');
        const data = new DataTransfer();
        card.dispatchEvent(new DragEvent('dragstart', {dataTransfer: data, bubbles: true}));
        column.dispatchEvent(new DragEvent('dragover', {dataTransfer: data, bubbles: true, cancelable: true}));
        column.dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true}));
    "#;
    c.execute(drag, vec![json!(format!("ticket-{ticket}"))])
        .await
        .unwrap();
    wait_in_column(c, ticket, "in_progress").await;
    // The stage menu of the same card; retried while the page from the drop is still settling.
    for attempt in 0.. {
        match move_by_menu(c, ticket, "resolved").await {
            Ok(()) => break,
            Err(e) if attempt < 20 => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the stage menu did not work: {e}"),
        }
    }
    wait_in_column(c, ticket, "resolved").await;
    shot(c, "31-tickets-kanban-moved").await;
}

async fn move_by_menu(
    c: &Client,
    ticket: &str,
    stage: &str,
) -> Result<(), fantoccini::error::CmdError> {
    let card = c.find(Locator::Id(&format!("ticket-{ticket}"))).await?;
    card.find(Locator::Css("select[name=stage]"))
        .await?
        .select_by_value(stage)
        .await?;
    card.find(Locator::Css("form.move button"))
        .await?
        .click()
        .await
}

async fn wait_in_column(c: &Client, ticket: &str, stage: &str) {
    let css = format!(".kanban .column[data-stage=\"{stage}\"] #ticket-{ticket}");
    for _ in 0..50 {
        if c.find(Locator::Css(&css)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("ticket {ticket} never showed in {stage}");
}

async fn flip_toggle(c: &Client, app: &TestApp) {
    c.goto(&app.url("/admin/settings")).await.unwrap();
    c.find(Locator::Css("input[name=enable_progressive_profiling]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.find(Locator::Css("form[action='/admin/settings'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The change shows in the history table once the page after the post is there.
    wait_text(c, "main table", "enable_progressive_profiling", false).await;
    shot(c, "40-settings").await;
    let features: Value = app
        .get("/api/v1/features", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(features["enable_progressive_profiling"], true);
}
