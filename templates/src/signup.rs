//! Signup and confirmation pages. The form works without JavaScript, loads nothing from third
//! parties, labels every field, and leaves the consent box unchecked (OI-2).

use std::collections::HashMap;

use maud::{Markup, html};

use crate::pages::{SiteIdentity, layout};

pub struct ListChoice<'a> {
    pub slug: &'a str,
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub checked: bool,
}

/// What the form shows: the lists, the values typed so far, and a message per field.
pub struct SubscribeForm<'a> {
    pub lists: Vec<ListChoice<'a>>,
    /// `?list=slug`: one list, chosen by the page that links here.
    pub fixed_list: Option<ListChoice<'a>>,
    pub email: &'a str,
    pub name: &'a str,
    pub consent_text: &'a str,
    /// A policy is in force: the consent statement links to it.
    pub policy_in_force: bool,
    /// The boxes as the person left them: unticked on a new form (OI-2), as sent when the form
    /// comes back with a message.
    pub consent: bool,
    pub age_confirmed: bool,
    pub errors: HashMap<String, String>,
}

fn field_error(errors: &HashMap<String, String>, field: &str) -> Markup {
    html! {
        @if let Some(msg) = errors.get(field) {
            p.error id={ (field) "-error" } role="alert" { (msg) }
        }
    }
}

pub fn subscribe_form(site: &SiteIdentity<'_>, form: &SubscribeForm<'_>) -> Markup {
    let e = &form.errors;
    layout(
        site,
        "Subscribe",
        html! {
            h1 { "Subscribe" }
            @if !e.is_empty() {
                p.error role="alert" { "Please check the fields marked below." }
            }
            form method="post" action="/subscribe" novalidate {
                label for="email" { "Email address" }
                input #email type="email" name="email" required autocomplete="email" maxlength="254"
                    value=(form.email) aria-describedby="email-error";
                (field_error(e, "email"))
                label for="name" { "Name (optional)" }
                input #name type="text" name="name" autocomplete="name" maxlength="200" value=(form.name);
                (field_error(e, "name"))
                @if let Some(list) = &form.fixed_list {
                    input type="hidden" name="list" value=(list.slug);
                    p { "You are subscribing to " strong { (list.name) } "." }
                } @else {
                    fieldset {
                        legend { "Newsletters" }
                        @for l in &form.lists {
                            label.check {
                                input type="checkbox" name="list" value=(l.slug) checked[l.checked];
                                span { (l.name) @if let Some(d) = l.description { br; small { (d) } } }
                            }
                        }
                    }
                }
                (field_error(e, "list"))
                label.check {
                    input type="checkbox" name="consent" value="yes" required aria-describedby="consent-error" checked[form.consent];
                    span { (form.consent_text)
                        @if form.policy_in_force { " " a href="/privacy" { "Privacy policy" } "." } }
                }
                (field_error(e, "consent"))
                label.check {
                    input type="checkbox" name="age_confirmed" value="yes" required aria-describedby="age_confirmed-error" checked[form.age_confirmed];
                    span { "I am 18 years of age or older." }
                }
                (field_error(e, "age_confirmed"))
                // A field people never see: bots fill it in (OI-8).
                div.hp aria-hidden="true" {
                    label for="website" { "Leave this field empty" }
                    input #website type="text" name="website" tabindex="-1" autocomplete="off";
                }
                p { button type="submit" { "Subscribe" } }
                p { small { "We will send you an email to confirm. Nothing else is sent until you do." } }
            }
        },
    )
}

/// The answer to a signup, the same whatever the address's state (OI-9). `masked` is the
/// address as typed, masked ("a…@example.org"): whoever typed it knows it already.
pub fn check_inbox(site: &SiteIdentity<'_>, masked: Option<&str>) -> Markup {
    layout(
        site,
        "Check your inbox",
        html! {
            h1 { "Almost done: check your inbox" }
            p {
                @if let Some(m) = masked { "We are sending a confirmation link to " strong { (m) } ". " }
                @else { "We are sending a confirmation link to the address you gave. " }
                "Open it and press the button to confirm. Until then you are not subscribed."
            }
            p { "Nothing there after a few minutes? Look in the spam folder. If the address is "
                "already subscribed, or has asked several times today, no new link is sent." }
            p { "Wrong address? " a href="/subscribe" { "Sign up again" } " with the right one." }
        },
    )
}

/// GET on a confirmation link: a button, so link scanners that prefetch change nothing (OI-11).
pub fn confirm_page(site: &SiteIdentity<'_>, token: &str, email: &str, lists: &[String]) -> Markup {
    layout(
        site,
        "Confirm your subscription",
        html! {
            h1 { "Confirm your subscription" }
            p { "Subscribe " strong { (email) } " to:" }
            ul { @for l in lists { li { (l) } } }
            form method="post" action={ "/confirm/" (token) } {
                p { button type="submit" { "Yes, subscribe me" } }
            }
            p { "If you did not ask to subscribe, close this page: nothing will happen." }
        },
    )
}

pub fn confirmed(
    site: &SiteIdentity<'_>,
    email: &str,
    lists: &[String],
    new_name: Option<&str>,
    preferences_url: &str,
) -> Markup {
    let (title, heading) = if lists.is_empty() && new_name.is_some() {
        ("Name confirmed", "Thank you: your new name is confirmed")
    } else {
        (
            "Subscription confirmed",
            "Thank you: your subscription is confirmed",
        )
    };
    layout(
        site,
        title,
        html! {
            h1 { (heading) }
            @if !lists.is_empty() {
                p { strong { (email) } " is now subscribed to:" }
                ul { @for l in lists { li { (l) } } }
            }
            @if let Some(name) = new_name {
                p { "We will call you " strong { (name) } " from now on." }
            }
            p { "Every email has a link to unsubscribe with one click. "
                a href=(preferences_url) { "Manage your subscriptions" } "." }
        },
    )
}

/// A confirmation link whose work is done: by this link earlier, or by a newer one.
pub fn already_confirmed(
    site: &SiteIdentity<'_>,
    email: &str,
    lists: &[String],
    preferences_url: &str,
) -> Markup {
    layout(
        site,
        "Already confirmed",
        html! {
            h1 { "Your subscription is already confirmed" }
            p { "There is nothing more to do: " strong { (email) } " is subscribed to:" }
            ul { @for l in lists { li { (l) } } }
            p { a href=(preferences_url) { "Manage your subscriptions" } }
        },
    )
}

pub fn nothing_to_confirm(site: &SiteIdentity<'_>) -> Markup {
    layout(
        site,
        "Nothing to confirm",
        html! {
            h1 { "There is nothing to confirm" }
            p { "This link no longer covers a pending subscription: you may have unsubscribed "
                "or erased your data since it was sent. "
                "If you want to subscribe, " a href="/subscribe" { "sign up again" } "." }
        },
    )
}

pub fn confirm_expired(site: &SiteIdentity<'_>) -> Markup {
    layout(
        site,
        "Link expired",
        html! {
            h1 { "This confirmation link has expired" }
            p { "For your protection confirmation links work only for a few days, and you are "
                "not subscribed. " a href="/subscribe" { "Sign up again" } " and we will send you a new one." }
        },
    )
}
