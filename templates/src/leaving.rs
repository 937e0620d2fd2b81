//! Pages for leaving and data rights: unsubscribe, preferences, export, erasure, change of
//! address. Every change is a button that POSTs; no page changes anything on GET (LU-6).
//! Pages reached through a signed link name the full address they act on: whoever holds the
//! link holds the mailbox.

use maud::{Markup, html};

use crate::pages::{SiteIdentity, layout};

/// GET on the List-Unsubscribe URI: a button, never an unsubscribe (LU-6).
pub fn unsubscribe_page(site: &SiteIdentity<'_>, token: &str, email: &str, list_name: &str) -> Markup {
    layout(
        site,
        "Unsubscribe",
        html! {
            h1 { "Unsubscribe from " (list_name) "?" }
            p { "Stop sending " strong { (list_name) } " to " strong { (email) } "." }
            form method="post" action={ "/unsubscribe/" (token) } {
                input type="hidden" name="List-Unsubscribe" value="One-Click";
                p { button type="submit" { "Unsubscribe" } }
            }
            p { "One click is all it takes; no login, no questions." }
        },
    )
}

/// GET on an unsubscribe link that has done its work: the state, not the question again.
pub fn already_unsubscribed(
    site: &SiteIdentity<'_>,
    email: Option<&str>,
    list_name: &str,
    preferences_url: Option<&str>,
) -> Markup {
    layout(
        site,
        "Already unsubscribed",
        html! {
            h1 { "You are already unsubscribed from " (list_name) }
            @match email {
                Some(email) => p { strong { (email) } " gets no emails from " (list_name) "." },
                None => p { "We hold no data for this link any more, so we send it nothing." },
            }
            @if let Some(url) = preferences_url {
                p { "Changed your mind? You can subscribe again, and manage your other "
                    "subscriptions and your data, on " a href=(url) { "your preference page" } "." }
            }
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
            p { "For " strong { (v.email) } "." }
            form method="post" action=(action("")) {
                fieldset {
                    legend { "Newsletters" }
                    @for l in &v.lists {
                        label.check { input type="checkbox" name="list" value=(l.slug) checked[l.subscribed]; span { (l.name) } }
                    }
                }
                label for="name" { "Name" }
                input #name type="text" name="name" maxlength="200" value=(v.name);
                p { button type="submit" { "Save" } }
            }
            form method="post" action=(action("/unsubscribe-all")) {
                p { button.secondary type="submit" { "Unsubscribe from all" } }
            }
            h2 { "Change your email address" }
            form method="post" action=(action("/address")) {
                label for="new-email" { "New email address" }
                input #new-email type="email" name="email" required maxlength="254";
                p { button.secondary type="submit" { "Send a confirmation to the new address" } }
            }
            h2 { "Your data" }
            form method="post" action=(action("/export")) {
                p { button.secondary type="submit" { "Email me a copy of my data" } }
            }
            p { "Erasing deletes everything we hold about you. You will be asked to confirm." }
            p { a.button.danger href=(action("/erase")) { "Erase my data…" } }
        },
    )
}

/// What an erasure deletes, as the confirmation page lists it.
pub struct ErasureView<'a> {
    pub token: &'a str,
    pub email: &'a str,
    pub name: Option<&'a str>,
    /// Lists the person is or was on.
    pub lists: Vec<&'a str>,
}

/// GET on the erase address: what goes, what stays, and one button that erases.
pub fn erase_page(site: &SiteIdentity<'_>, v: &ErasureView<'_>) -> Markup {
    let back = format!("/preferences/{}", v.token);
    layout(
        site,
        "Erase your data",
        html! {
            h1 { "Erase everything about " (v.email) "?" }
            section.danger-zone {
                h2 { "This is deleted at once" }
                ul {
                    li { "The address " strong { (v.email) } }
                    @if let Some(name) = v.name { li { "Your name, " (name) } }
                    @if !v.lists.is_empty() {
                        li { "Your subscriptions: " (v.lists.join(", ")) }
                    }
                    li { "The record of your consent: when and how you signed up and confirmed" }
                    li { "The log of emails we sent you" }
                }
                h2 { "What stays" }
                p { "Only a keyed fingerprint of the address, from which the address cannot be read "
                    "back. It keeps anyone from adding it to our lists again without your new consent." }
                p { strong { "This cannot be undone." } " You get no more email from us, not even a confirmation of this." }
                form method="post" action={ "/preferences/" (v.token) "/erase" } {
                    div.actions {
                        button.danger.confirm type="submit" { "Erase my data now" }
                        a href=(back) { "Keep my data" }
                    }
                }
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

/// GET on a download link.
pub fn export_page(site: &SiteIdentity<'_>, token: &str, email: &str) -> Markup {
    layout(
        site,
        "Download your data",
        html! {
            h1 { "Download your data" }
            p { "The file holds everything we keep about " strong { (email) } ", as JSON. The link works once." }
            form method="post" action={ "/export/" (token) } { p { button type="submit" { "Download" } } }
        },
    )
}

/// A download link used before: where to get a new one.
pub fn export_spent(site: &SiteIdentity<'_>, email: &str, preferences_url: &str) -> Markup {
    layout(
        site,
        "Link used already",
        html! {
            h1 { "This download link was used already" }
            p { "Each download link works once, so that a copy of your data cannot be fetched again "
                "by someone else. The data of " strong { (email) } " is still here." }
            p { "Need another copy? Ask for a new link on " a href=(preferences_url) { "your preference page" } "." }
        },
    )
}
