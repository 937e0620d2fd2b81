//! What a caller composes: content and addressing, no identity, no footer, no headers.

use maud::Markup;
use url::Url;

use crate::domain::{DisplayName, EmailAddress, HeaderText};

/// The list a marketing message belongs to, and the links that let its recipient leave it.
#[derive(Debug, Clone)]
pub struct ListHeaders {
    /// The list's slug (`[a-z0-9-]`), which makes the stable `List-Id` (LU-10).
    pub slug: String,
    /// The RFC 8058 one-click URI for this recipient and list (LU-1, LU-4).
    pub unsubscribe_url: Url,
    /// The preference page for this recipient (CS-9).
    pub preferences_url: Url,
}

#[derive(Debug, Clone)]
pub enum MailClass {
    /// Confirmations, notices: from `NOTICE_FROM`, no list headers (GY-7, CS-13).
    Transactional {
        /// A link to the preference page, when the recipient has one.
        preferences_url: Option<Url>,
    },
    /// Campaigns: from `MAIL_FROM` (or an address on the same domain), with `List-Id`,
    /// `List-Unsubscribe` and `List-Unsubscribe-Post` and the opt-out in the footer (CS-5).
    Marketing {
        list: ListHeaders,
        from: Option<EmailAddress>,
    },
}

#[derive(Debug, Clone)]
pub struct ComposedMessage {
    pub to: EmailAddress,
    pub to_name: Option<DisplayName>,
    /// Used exactly as given (CS-2).
    pub subject: HeaderText,
    /// The content as an HTML fragment; the layout and footer are added by the stamp.
    pub html: Markup,
    /// The same content as plain text.
    pub text: String,
    /// One sentence: why the recipient gets this message (shown in the footer).
    pub reason: String,
    pub class: MailClass,
}
