//! A campaign compiled once for the workers: its subject and sender parsed, its content
//! compiled, its lists looked up.

use crate::domain::{EmailAddress, HeaderText};
use crate::mail::content::{Content, Source};
use crate::store::entities::{campaign, list};
use crate::store::{self, Db, campaigns as db};

/// A campaign ready to render: what the worker keeps per campaign.
pub struct Prepared {
    pub subject: HeaderText,
    pub from: Option<EmailAddress>,
    pub content: Content,
    pub lists: Vec<list::Model>,
}

/// Why a campaign could not be prepared: the API answers a database failure as a server
/// error, not as a problem with the campaign.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("database: {0}")]
    Database(#[from] store::Error),
    #[error("the campaign is gone")]
    Gone,
    /// The stored campaign does not compile or render (subject, sender, template).
    #[error("{0}")]
    Invalid(String),
}

pub fn source_of(c: &campaign::Model) -> Source {
    match &c.markdown {
        Some(md) => Source::Markdown(md.clone()),
        None => Source::HtmlAndText {
            html: c.html.clone().unwrap_or_default(),
            text: c.text.clone().unwrap_or_default(),
        },
    }
}

pub async fn prepare_campaign(db: &Db, id: i64) -> Result<Prepared, PrepareError> {
    let c = db::get(db, id).await?.ok_or(PrepareError::Gone)?;
    let lists = db::lists_of(db, id).await?;
    let sample = lists.first().map(|l| l.name.clone()).unwrap_or_default();
    Ok(Prepared {
        subject: HeaderText::parse(&c.subject).map_err(|e| PrepareError::Invalid(e.to_string()))?,
        from: c
            .from_address
            .as_deref()
            .map(EmailAddress::parse)
            .transpose()
            .map_err(|e| PrepareError::Invalid(e.to_string()))?,
        content: Content::compile_off_thread(source_of(&c), sample)
            .await
            .map_err(|e| PrepareError::Invalid(e.to_string()))?,
        lists,
    })
}
