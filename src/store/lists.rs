//! Mailing lists.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Set, sea_query::LockType,
};

use super::entities::list;
use crate::domain::ListSlug;

pub async fn create(
    db: &impl ConnectionTrait,
    slug: &ListSlug,
    name: &str,
    description: Option<&str>,
    public: bool,
) -> Result<list::Model, DbErr> {
    list::ActiveModel {
        slug: Set(slug.as_str().to_owned()),
        name: Set(name.to_owned()),
        description: Set(description.map(str::to_owned)),
        public: Set(public),
        created_at: Set(super::now()),
        ..Default::default()
    }
    .insert(db)
    .await
}

/// Creates this public list if the database has no list at all; true when it did. Several
/// instances starting at once create it once.
pub async fn create_if_none(db: &impl ConnectionTrait, slug: &ListSlug, name: &str) -> Result<bool, DbErr> {
    if list::Entity::find().one(db).await?.is_some() {
        return Ok(false);
    }
    match create(db, slug, name, None, true).await {
        Ok(_) => Ok(true),
        Err(e) if super::is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// What a change to a list sets; `None` leaves a field as it is.
#[derive(Default)]
pub struct ListChange {
    pub name: Option<String>,
    /// `Some(None)` clears the description.
    pub description: Option<Option<String>>,
    pub public: Option<bool>,
}

pub async fn update(
    db: &impl ConnectionTrait,
    list: list::Model,
    change: ListChange,
) -> Result<list::Model, DbErr> {
    let mut m: list::ActiveModel = list.into();
    if let Some(name) = change.name {
        m.name = Set(name);
    }
    if let Some(description) = change.description {
        m.description = Set(description);
    }
    if let Some(public) = change.public {
        m.public = Set(public);
    }
    m.update(db).await
}

/// Deletes a list: its subscriptions end; consent evidence stays with its list reference cleared.
pub async fn delete(db: &impl ConnectionTrait, id: i64) -> Result<(), DbErr> {
    list::Entity::delete_by_id(id).exec(db).await?;
    Ok(())
}

pub async fn by_slug(db: &impl ConnectionTrait, slug: &str) -> Result<Option<list::Model>, DbErr> {
    list::Entity::find()
        .filter(list::Column::Slug.eq(slug))
        .one(db)
        .await
}

pub async fn all(db: &impl ConnectionTrait) -> Result<Vec<list::Model>, DbErr> {
    list::Entity::find()
        .order_by_asc(list::Column::Slug)
        .all(db)
        .await
}

pub async fn public(db: &impl ConnectionTrait) -> Result<Vec<list::Model>, DbErr> {
    list::Entity::find()
        .filter(list::Column::Public.eq(true))
        .order_by_asc(list::Column::Name)
        .all(db)
        .await
}

/// Of these lists, the ones that still exist. On PostgreSQL they stay locked against deletion
/// until the transaction ends, so rows that refer to them can be written safely.
pub async fn lock_existing(db: &impl ConnectionTrait, ids: Vec<i64>) -> Result<HashSet<i64>, DbErr> {
    let mut query = list::Entity::find()
        .select_only()
        .column(list::Column::Id)
        .filter(list::Column::Id.is_in(ids));
    if super::is_postgres(db) {
        query = query.lock(LockType::KeyShare);
    }
    Ok(query.into_tuple::<i64>().all(db).await?.into_iter().collect())
}

/// How long the public lists are served from memory. Every signup checks its lists against
/// them; reading them once per request was a third of the database's statements under load.
/// A change made through this instance's API is seen at once ([`PublicLists::forget`]), one
/// made through another instance within this time.
const PUBLIC_LISTS_TTL: Duration = Duration::from_secs(1);

/// The public lists, read at most once per [`PUBLIC_LISTS_TTL`].
#[derive(Default)]
pub struct PublicLists {
    cached: Mutex<Option<(Instant, Arc<Vec<list::Model>>)>>,
}

impl PublicLists {
    pub async fn get(&self, db: &impl ConnectionTrait) -> Result<Arc<Vec<list::Model>>, DbErr> {
        if let Some((read_at, lists)) = &*self.cached.lock().expect("public lists lock")
            && read_at.elapsed() < PUBLIC_LISTS_TTL
        {
            return Ok(lists.clone());
        }
        let read_at = Instant::now();
        let lists = Arc::new(public(db).await?);
        *self.cached.lock().expect("public lists lock") = Some((read_at, lists.clone()));
        Ok(lists)
    }

    /// Drops what is cached: the next signup reads the lists afresh.
    pub fn forget(&self) {
        *self.cached.lock().expect("public lists lock") = None;
    }
}

pub async fn by_id(db: &impl ConnectionTrait, id: i64) -> Result<Option<list::Model>, DbErr> {
    list::Entity::find_by_id(id).one(db).await
}

pub async fn by_ids(db: &impl ConnectionTrait, ids: Vec<i64>) -> Result<Vec<list::Model>, DbErr> {
    list::Entity::find()
        .filter(list::Column::Id.is_in(ids))
        .order_by_asc(list::Column::Name)
        .all(db)
        .await
}
