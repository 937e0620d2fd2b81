//! Pages for leaving and data rights: unsubscribe, preferences, export, change of address.
//! Every change is a button that POSTs; no page changes anything on GET (LU-6).

use maud::{Markup, html};

use crate::pages::{SiteIdentity, layout};

/// GET on the List-Unsubscribe URI: a button, never an unsubscribe (LU-6).
pub fn unsubscribe_page(site: &SiteIdentity<'_>, token: &str, list_name: &str) -> Markup {
    layout(
        site,
        "Unsubscribe",
        html! {
            h1 { "Unsubscribe from " (list_name) "?" }
            form method="post" action={ "/unsubscribe/" (token) } {
                input type="hidden" name="List-Unsubscribe" value="One-Click";
                p { button type="submit" { "Unsubscribe" } }
            }
            p { "One click is all it takes; no login, no questions." }
        },
    )
}

pub fn unsubscribed(site: &SiteIdentity<'_>, list_name: &str, preferences_url: Option<&str>) -> Markup {
    layout(
        site,
        "Unsubscribed",
        html! {
            h1 { "You are unsubscribed" }
            p { "You will get no more emails from " strong { (list_name) } ". This took effect at once." }
            @if let Some(url) = preferences_url {
                p { a href=(url) { "Manage your other subscriptions and your data" } }
            }
        },
    )
}

pub struct ListToggle<'a> {
    pub slug: &'a str,
    pub name: &'a str,
    pub subscribed: bool,
}

pub struct PreferencesView<'a> {
    pub token: &'a str,
    pub email: &'a str,
    pub name: &'a str,
    pub lists: Vec<ListToggle<'a>>,
    pub notice: Option<&'a str>,
}

pub fn preferences(site: &SiteIdentity<'_>, v: &PreferencesView<'_>) -> Markup {
    let action = |suffix: &str| format!("/preferences/{}{}", v.token, suffix);
    layout(
        site,
        "Your preferences",
        html! {
            h1 { "Your preferences" }
            @if let Some(n) = v.notice { p.notice role="status" { (n) } }
            p { "Email address: " strong { (v.email) } }
            form method="post" action=(action("")) {
                fieldset {
                    legend { "Newsletters" }
                    @for l in &v.lists {
                        label { input type="checkbox" name="list" value=(l.slug) checked[l.subscribed]; " " (l.name) }
                    }
                }
                label for="name" { "Name" }
                input #name type="text" name="name" maxlength="200" value=(v.name);
                p { button type="submit" { "Save" } }
            }
            form method="post" action=(action("/unsubscribe-all")) {
                p { button type="submit" { "Unsubscribe from all" } }
            }
            h2 { "Change your email address" }
            form method="post" action=(action("/address")) {
                label for="new-email" { "New email address" }
                input #new-email type="email" name="email" required maxlength="254";
                p { button type="submit" { "Send a confirmation to the new address" } }
            }
            h2 { "Your data" }
            form method="post" action=(action("/export")) {
                p { button type="submit" { "Email me a copy of my data" } }
            }
            form method="post" action=(action("/erase")) {
                p { "Erasing deletes everything we hold about you at once. This cannot be undone." }
                p { button type="submit" { "Erase my data now" } }
            }
        },
    )
}

pub fn message(site: &SiteIdentity<'_>, title: &str, text: &str) -> Markup {
    layout(site, title, html! { h1 { (title) } p { (text) } })
}

/// GET on a single-use link: a button that POSTs (prefetching scanners spend nothing).
pub fn button_page(site: &SiteIdentity<'_>, title: &str, text: &str, action: &str, button: &str) -> Markup {
    layout(
        site,
        title,
        html! {
            h1 { (title) }
            p { (text) }
            form method="post" action=(action) { p { button type="submit" { (button) } } }
        },
    )
}
