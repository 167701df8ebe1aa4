//! Driving the web client in a browser the way a user does (tests/web_*.rs): register, open
//! a chat, send, wait for what arrives.

use serde_json::json;

use super::{Browser, TestServer};

/// A browser on the server's page, registered as `name`.
pub async fn browser_user(server: &TestServer, name: &str) -> Browser {
    let browser = Browser::start().await;
    browser.open(&format!("{}/", server.url())).await;
    browser.type_into("[data-testid=username]", name).await;
    browser.click("[data-testid=register]").await;
    browser.find("[data-testid=new-chat]").await;
    browser
}

pub async fn start_chat(browser: &Browser, name: &str, members: &str) {
    browser.click("[data-testid=new-chat]").await;
    browser.type_into("[data-testid=new-chat-name]", name).await;
    if !members.is_empty() {
        browser
            .type_into("[data-testid=new-chat-members]", members)
            .await;
    }
    browser.click("[data-testid=new-chat-create]").await;
    shows_chat(browser, name).await;
}

/// Waits until the open chat is `chat` with its history drawn (the previous one's compose box
/// may still be there, and the title shows before the history loads).
pub async fn shows_chat(browser: &Browser, chat: &str) {
    browser
        .wait_for(
            &format!(
                "return document.querySelector('[data-testid=chat-title]')?.textContent === {chat:?}
                    && document.querySelector('ol.messages:not([aria-busy])') !== null"
            ),
            30,
        )
        .await;
}

pub async fn send(browser: &Browser, text: &str) {
    // Enter sends; Shift+Enter (WebDriver's Shift pressed, Enter, Shift released) breaks
    // the line.
    let typed = text.replace('\n', "\u{E008}\u{E007}\u{E008}");
    browser.type_into("[data-testid=compose]", &typed).await;
    browser.click("[data-testid=send]").await;
    // Sent once the server stored it.
    stored(browser, text).await;
}

/// Waits until the open chat shows a stored message (an id, not sending) with `text`;
/// returns its id.
pub async fn stored(browser: &Browser, text: &str) -> String {
    browser
        .wait_for(
            &format!(
                "return [...document.querySelectorAll('[data-testid=message]')]
                    .find(m => m.querySelector('.text')?.textContent === {text:?}
                        && m.dataset.id && m.dataset.status !== 'sending')?.dataset.id"
            ),
            30,
        )
        .await
        .as_str()
        .unwrap()
        .to_owned()
}

pub async fn open_chat(browser: &Browser, chat: &str) {
    browser
        .click(&format!("[data-testid=chat][data-chat=\"{chat}\"]"))
        .await;
    shows_chat(browser, chat).await;
}

/// The messages shown in the open chat: (sender, text).
pub async fn shown(browser: &Browser) -> Vec<(String, String)> {
    let value = browser
        .execute(
            "return [...document.querySelectorAll('[data-testid=message]')]
                .map(m => [m.dataset.sender, m.querySelector('.text').textContent])",
            json!([]),
        )
        .await;
    serde_json::from_value(value).unwrap()
}

pub async fn wait_shown(browser: &Browser, sender: &str, text: &str) {
    browser
        .wait_for(
            &format!(
                "return [...document.querySelectorAll('[data-testid=message]')]
                    .some(m => m.dataset.sender === {sender:?}
                        && m.querySelector('.text').textContent === {text:?})"
            ),
            30,
        )
        .await;
}

pub fn times_shown(shown: &[(String, String)], text: &str) -> usize {
    shown.iter().filter(|(_, t)| t == text).count()
}

/// The id of the (first) message in the open chat whose text is `text`, once it has one.
pub async fn message_id(browser: &Browser, text: &str) -> String {
    browser
        .wait_for(
            &format!(
                "return [...document.querySelectorAll('[data-testid=message]')]
                    .find(m => m.querySelector('.text')?.textContent === {text:?})?.dataset.id"
            ),
            30,
        )
        .await
        .as_str()
        .unwrap()
        .to_owned()
}

/// A CSS selector for the message `id`.
pub fn message(id: &str) -> String {
    format!("[data-testid=message][data-id=\"{id}\"]")
}
