//! Image records in containerd's image store: a name pointing at a manifest (or index) descriptor.

use std::time::SystemTime;

use containerd_client::services::v1 as pb;

use crate::convert::{
    descriptor_from_pb, descriptor_to_pb, field_mask, label_paths, labels_from_pb, labels_to_pb,
    time_from_pb,
};
use crate::error::CallResult;
use crate::{Client, ContainerdError, Descriptor, Labels};

/// An image record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Its name, e.g. `docker.io/library/app:dev`.
    pub name: String,
    /// Its labels.
    pub labels: Labels,
    /// The manifest or index it points at.
    pub target: Descriptor,
    /// When it was created (ignored on create and update).
    pub created_at: Option<SystemTime>,
    /// When it was last updated (ignored on create and update).
    pub updated_at: Option<SystemTime>,
}

impl Image {
    /// A record named `name` pointing at `target`, without labels.
    pub fn new(name: impl Into<String>, target: Descriptor) -> Self {
        Self {
            name: name.into(),
            labels: Labels::new(),
            target,
            created_at: None,
            updated_at: None,
        }
    }
}

/// Which fields of an image record [`Images::update`] changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageUpdate {
    /// The target descriptor and all labels (labels not given are removed).
    All,
    /// Only the target descriptor.
    Target,
    /// Only the labels given (an empty value removes that label); others stay.
    Labels,
}

/// containerd's Images service.
#[derive(Debug, Clone)]
pub struct Images {
    client: Client,
}

impl Images {
    pub(crate) fn new(client: Client) -> Self {
        Self { client }
    }

    /// The image named `name`; NotFound if there is none.
    pub async fn get(&self, name: &str) -> Result<Image, ContainerdError> {
        let request = pb::GetImageRequest {
            name: name.to_owned(),
        };
        let image = self
            .client
            .images_rpc()
            .get(self.client.request(request))
            .await
            .call("Images.Get")?
            .image
            .ok_or(ContainerdError::MissingField {
                call: "Images.Get",
                field: "image",
            })?;
        image_from_pb(image)
    }

    /// Creates `image`; AlreadyExists if the name is taken.
    pub async fn create(&self, image: &Image) -> Result<Image, ContainerdError> {
        let request = pb::CreateImageRequest {
            image: Some(image_to_pb(image)),
            source_date_epoch: None,
        };
        let created = self
            .client
            .images_rpc()
            .create(self.client.request(request))
            .await
            .call("Images.Create")?
            .image
            .ok_or(ContainerdError::MissingField {
                call: "Images.Create",
                field: "image",
            })?;
        image_from_pb(created)
    }

    /// Updates the `fields` of the record named `image.name`; NotFound if there is none.
    pub async fn update(
        &self,
        image: &Image,
        fields: ImageUpdate,
    ) -> Result<Image, ContainerdError> {
        let paths = match fields {
            ImageUpdate::All => vec!["target".to_owned(), "labels".to_owned()],
            ImageUpdate::Target => vec!["target".to_owned()],
            ImageUpdate::Labels => label_paths(&image.labels),
        };
        let request = pb::UpdateImageRequest {
            image: Some(image_to_pb(image)),
            update_mask: field_mask(paths),
            source_date_epoch: None,
        };
        let updated = self
            .client
            .images_rpc()
            .update(self.client.request(request))
            .await
            .call("Images.Update")?
            .image
            .ok_or(ContainerdError::MissingField {
                call: "Images.Update",
                field: "image",
            })?;
        image_from_pb(updated)
    }

    /// Creates `image`, or updates its target and labels if the name exists (what an exporter does).
    pub async fn create_or_update(&self, image: &Image) -> Result<Image, ContainerdError> {
        match self.create(image).await {
            Err(e) if e.is_already_exists() => self.update(image, ImageUpdate::All).await,
            other => other,
        }
    }

    /// Deletes the record `name`. With `sync`, containerd collects garbage before answering.
    /// NotFound if there is none.
    pub async fn delete(&self, name: &str, sync: bool) -> Result<(), ContainerdError> {
        let request = pb::DeleteImageRequest {
            name: name.to_owned(),
            sync,
            target: None,
        };
        self.client
            .images_rpc()
            .delete(self.client.request(request))
            .await
            .call("Images.Delete")
            .map(drop)
    }

    /// The images of the namespace, filtered with containerd's filter syntax (e.g. `name==…`); all
    /// of them when `filters` is empty.
    pub async fn list(&self, filters: &[&str]) -> Result<Vec<Image>, ContainerdError> {
        let request = pb::ListImagesRequest {
            filters: filters.iter().map(|f| (*f).to_owned()).collect(),
        };
        let images = self
            .client
            .images_rpc()
            .list(self.client.request(request))
            .await
            .call("Images.List")?
            .images;
        images.into_iter().map(image_from_pb).collect()
    }
}

fn image_to_pb(image: &Image) -> pb::Image {
    pb::Image {
        name: image.name.clone(),
        labels: labels_to_pb(&image.labels),
        target: Some(descriptor_to_pb(&image.target)),
        created_at: None,
        updated_at: None,
    }
}

fn image_from_pb(image: pb::Image) -> Result<Image, ContainerdError> {
    let target = image.target.ok_or(ContainerdError::MissingField {
        call: "Images",
        field: "image target",
    })?;
    Ok(Image {
        name: image.name,
        labels: labels_from_pb(image.labels),
        target: descriptor_from_pb(target)?,
        created_at: time_from_pb(image.created_at),
        updated_at: time_from_pb(image.updated_at),
    })
}
