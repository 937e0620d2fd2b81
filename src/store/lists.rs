//! Mailing lists.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, Set,
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

pub async fn by_ids(db: &impl ConnectionTrait, ids: Vec<i64>) -> Result<Vec<list::Model>, DbErr> {
    list::Entity::find()
        .filter(list::Column::Id.is_in(ids))
        .order_by_asc(list::Column::Name)
        .all(db)
        .await
}
