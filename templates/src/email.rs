//! Email layouts. Content comes from the caller as an HTML fragment and plain text; the footer
//! (sender identity, postal address, contact, why you get this, how to leave) is added here and
//! is the same in both parts.

use maud::{DOCTYPE, Markup, PreEscaped, html};

/// What every email carries at its foot. Built only by the mail stamp.
pub struct Footer<'a> {
    pub org_name: &'a str,
    pub postal_address: &'a str,
    pub contact_email: &'a str,
    /// One sentence: why this person gets this email.
    pub reason: &'a str,
    /// For marketing: the one-click unsubscribe page for this list.
    pub unsubscribe_url: Option<&'a str>,
    /// The preference page (lists, data rights).
    pub preferences_url: Option<&'a str>,
}

/// The HTML part: the content fragment inside a minimal, inline-styled layout.
pub fn html_part(subject: &str, content: &Markup, footer: &Footer<'_>) -> Markup {
    html! {
        (DOCTYPE)
        html {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (subject) }
            }
            body style="font-family:Arial,Helvetica,sans-serif;line-height:1.5;color:#1a1a1a;max-width:40rem;margin:0 auto;padding:1rem" {
                (content)
                hr style="border:none;border-top:1px solid #ddd;margin:2rem 0 1rem";
                div style="font-size:12px;color:#555" {
                    p { (footer.reason) }
                    @if let Some(url) = footer.unsubscribe_url {
                        p {
                            "You can unsubscribe at any time with one click: "
                            a href=(url) { "Unsubscribe" } "."
                            @if let Some(prefs) = footer.preferences_url {
                                " " a href=(prefs) { "Manage your preferences" } "."
                            }
                        }
                    } @else if let Some(prefs) = footer.preferences_url {
                        p { a href=(prefs) { "Manage your preferences and your data" } "." }
                    }
                    p {
                        (footer.org_name) br;
                        @for line in footer.postal_address.lines() { (line) br; }
                        "Contact: " a href={ "mailto:" (footer.contact_email) } { (footer.contact_email) }
                    }
                }
            }
        }
    }
}

/// The plain-text part: the content, then the same footer as text.
pub fn text_part(content: &str, footer: &Footer<'_>) -> String {
    let mut out = String::with_capacity(content.len() + 512);
    out.push_str(content.trim_end());
    out.push_str("\n\n-- \n");
    out.push_str(footer.reason);
    out.push('\n');
    if let Some(url) = footer.unsubscribe_url {
        out.push_str("\nUnsubscribe with one click: ");
        out.push_str(url);
        out.push('\n');
    }
    if let Some(prefs) = footer.preferences_url {
        out.push_str("Manage your preferences and your data: ");
        out.push_str(prefs);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(footer.org_name);
    out.push('\n');
    for line in footer.postal_address.lines() {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("Contact: ");
    out.push_str(footer.contact_email);
    out.push('\n');
    out
}

/// Markdown-free helper for transactional content: paragraphs of escaped text.
pub fn paragraphs(text: &str) -> Markup {
    html! {
        @for para in text.split("\n\n") {
            p { (para) }
        }
    }
}

/// Wraps already-safe HTML (for example rendered markdown) as markup.
pub fn trusted_html(html: String) -> Markup {
    PreEscaped(html)
}

/// The double opt-in email (OI-4): who asks, for which lists (and for which new name), what to
/// do, what happens if you do nothing, and until when the link works. Purely transactional.
pub struct ConfirmationEmail<'a> {
    pub org_name: &'a str,
    pub lists: &'a [String],
    /// A name given at a later signup, different from the one on file.
    pub new_name: Option<&'a str>,
    pub link: &'a str,
    pub expires: &'a str,
}

impl ConfirmationEmail<'_> {
    /// The request, in a sentence (the lists follow it when there are any).
    fn request(&self) -> String {
        let org = self.org_name;
        match (self.lists.is_empty(), self.new_name) {
            (true, Some(name)) => format!(
                "{org} received a request to call you \u{201c}{name}\u{201d} in its emails to this address from now on."
            ),
            _ => format!("{org} received a request to subscribe this email address to:"),
        }
    }

    /// The new name, when it comes with a subscription.
    fn also(&self) -> Option<String> {
        self.new_name
            .filter(|_| !self.lists.is_empty())
            .map(|name| format!("The request also asks us to call you \u{201c}{name}\u{201d} from now on."))
    }

    fn action(&self) -> &'static str {
        if self.lists.is_empty() {
            "Confirm my new name"
        } else {
            "Confirm my subscription"
        }
    }

    fn if_not(&self) -> &'static str {
        if self.lists.is_empty() {
            "If you did not ask for this, ignore this email: nothing changes and we will not write again about it."
        } else {
            "If you did not ask for this, ignore this email: you will not be subscribed and we will not write again about it."
        }
    }

    pub fn html(&self) -> Markup {
        html! {
            p { "Hello," }
            p { (self.request()) }
            @if !self.lists.is_empty() {
                ul { @for l in self.lists { li { (l) } } }
            }
            @if let Some(also) = self.also() { p { (also) } }
            p { "To confirm, open this link and press the button on the page:" }
            p { a href=(self.link) { (self.action()) } }
            p { "The link works until " (self.expires) "." }
            p { (self.if_not()) }
        }
    }

    pub fn text(&self) -> String {
        let mut out = format!("Hello,\n\n{}\n\n", self.request());
        for l in self.lists {
            out.push_str("  - ");
            out.push_str(l);
            out.push('\n');
        }
        if !self.lists.is_empty() {
            out.push('\n');
        }
        if let Some(also) = self.also() {
            out.push_str(&also);
            out.push_str("\n\n");
        }
        out.push_str("To confirm, open this link and press the button on the page:\n\n");
        out.push_str(self.link);
        out.push_str(&format!("\n\nThe link works until {}.\n\n", self.expires));
        out.push_str(self.if_not());
        out.push('\n');
        out
    }
}

/// Paragraphs of escaped text in which `link` (when it appears) becomes a hyperlink.
pub fn paragraphs_with_link(text: &str, link: &str) -> Markup {
    html! {
        @for para in text.split("\n\n") {
            @if para.trim() == link {
                p { a href=(link) { (link) } }
            } @else {
                p { (para) }
            }
        }
    }
}

/// A policy-change notice (CS-12, CS-13): the notice first, plain, no promotion.
pub struct PolicyNotice<'a> {
    pub effective: &'a str,
    pub summary: &'a str,
    pub url: &'a str,
    /// For a material change: where to agree. Until then no newsletters are sent.
    pub agree_url: Option<&'a str>,
    /// The first version: there is nothing it changes.
    pub first: bool,
}

const MATERIAL: &str = "This change is material: we will not send you newsletters under the new terms unless you agree. \
If you do not agree, you will get no more newsletters; service notices like this one continue.";

impl PolicyNotice<'_> {
    fn opening(&self) -> (&'static str, &'static str, &'static str) {
        if self.first {
            (
                "We have published our privacy policy. It takes effect on ",
                "In short:",
                "I agree to the privacy policy",
            )
        } else {
            (
                "We are changing our privacy policy. The new version takes effect on ",
                "What changes:",
                "I agree to the new privacy policy",
            )
        }
    }

    pub fn html(&self) -> Markup {
        let (opening, summary_heading, agree_label) = self.opening();
        html! {
            p { (opening) strong { (self.effective) } "." }
            p { (summary_heading) }
            (paragraphs(self.summary))
            p { "Read the full policy: " a href=(self.url) { (self.url) } }
            @if let Some(agree) = self.agree_url {
                p { (MATERIAL) }
                p { a href=(agree) { (agree_label) } }
            }
            p { "If you have questions, reply to this email or write to the contact address below." }
        }
    }

    pub fn text(&self) -> String {
        let (opening, summary_heading, _) = self.opening();
        let agree = match self.agree_url {
            Some(url) => format!("{MATERIAL}\n\nTo agree, open this link and press the button: {url}\n\n"),
            None => String::new(),
        };
        format!(
            "{opening}{}.\n\n{summary_heading}\n\n{}\n\n\
             Read the full policy: {}\n\n{agree}If you have questions, reply to this email or write to the contact address below.\n",
            self.effective,
            self.summary.trim(),
            self.url,
        )
    }
}
