//! Template operations (`/v2/templates`) and the public template catalog
//! (`/v2/catalog/templates`).

use http::Method;

use crate::Result;
use crate::checks::{checked, operation_on};
use crate::client::{Call, Client, Retry};
use crate::models::{
    CreateTemplateRequest, Template, TemplateId, TemplateList, TemplateSource,
    UpdateTemplateRequest,
};

impl Client {
    /// Lists the account's own templates (`GET /v2/templates`).
    ///
    /// ```no_run
    /// use runpod_api::models::{
    ///     CpuRequest, CreatePodRequest, CreateTemplateRequest, TemplateMounts,
    /// };
    ///
    /// # async fn run(client: runpod_api::Client) -> runpod_api::Result<()> {
    /// let request = CreateTemplateRequest::new("blender", "runpod/base:1.0.2-ubuntu2404")
    ///     .port("22/tcp")
    ///     .disk(20)
    ///     .mounts(TemplateMounts::persistent(50, "/workspace"))
    ///     .start_jupyter(false);
    /// let template = client.create_template(&request).await?;
    /// for template in client.list_templates().await? {
    ///     println!("{} {}", template.id, template.name);
    /// }
    /// let pod = CreatePodRequest::new("from-template")
    ///     .template_id(template.id.clone())
    ///     .cpu(CpuRequest::new("cpu3c", 2));
    /// client.create_pod(&pod).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// An [`Error::Api`](crate::Error::Api) answer (401, 403, 429 and 5xx after retries),
    /// transport failures and timeouts after retries, or [`Error::Decode`](crate::Error::Decode).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn list_templates(&self) -> Result<Vec<Template>> {
        let call = Call::new("list templates", Method::GET, &["templates"]);
        Ok(self.json::<TemplateList>(&call).await?.templates)
    }

    /// Creates a template (`POST /v2/templates`).
    ///
    /// Retried only when the API provably did not act (429, or no connection): after a timeout
    /// or a 5xx the template may exist, so list templates before creating it again.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`](crate::Error::InvalidRequest) before sending for an empty name
    /// or image, a disk under 1 GB, a persistent mount under 10 GB, a CUDA version that is not
    /// `major.minor` or an unknown category; API answers 400 and 422
    /// ([`Error::violations`](crate::Error::violations)), plus those of
    /// [`Client::list_templates`].
    #[tracing::instrument(level = "debug", skip_all, fields(name = %request.name))]
    pub async fn create_template(&self, request: &CreateTemplateRequest) -> Result<Template> {
        let operation = format!("create template {:?}", request.name);
        checked(&operation, request.check())?;
        let call = Call::new(operation, Method::POST, &["templates"]).json_body(request)?;
        self.json(&call).await
    }

    /// Gets a template (`GET /v2/templates/{id}`): one of the account's own or a public one.
    ///
    /// # Errors
    ///
    /// As [`Client::list_templates`], plus 404
    /// ([`Error::is_not_found`](crate::Error::is_not_found))
    /// for an unknown template, and [`Error::InvalidRequest`](crate::Error::InvalidRequest) for
    /// an empty id.
    #[tracing::instrument(level = "debug", skip_all, fields(template_id = %id))]
    pub async fn get_template(&self, id: &TemplateId) -> Result<Template> {
        let operation = operation_on("get template", "template", id.as_str())?;
        let path = ["templates", id.as_str()];
        self.json(&Call::new(operation, Method::GET, &path)).await
    }

    /// Changes a template's settings (`PATCH /v2/templates/{id}`); only the fields set in
    /// `request` change. Pods and endpoints created from it earlier keep their settings.
    ///
    /// The update sets absolute values, so sending it twice has the effect of once: it is
    /// retried like a read.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`](crate::Error::InvalidRequest) for an update that changes
    /// nothing or breaks a rule checked by [`Client::create_template`]; API answers 400, 404
    /// (unknown, or a public template of another user) and 422.
    #[tracing::instrument(level = "debug", skip_all, fields(template_id = %id))]
    pub async fn update_template(
        &self,
        id: &TemplateId,
        request: &UpdateTemplateRequest,
    ) -> Result<Template> {
        let operation = operation_on("update template", "template", id.as_str())?;
        checked(&operation, request.check())?;
        let path = ["templates", id.as_str()];
        let call = Call::new(operation, Method::PATCH, &path)
            .json_body(request)?
            .retry(Retry::Always);
        self.json(&call).await
    }

    /// Deletes one of the account's templates (`DELETE /v2/templates/{id}`).
    ///
    /// # Errors
    ///
    /// API answers 400 while a pod or serverless endpoint uses the template, 404 for an unknown
    /// template (a repeated delete included), and the usual transport errors.
    #[tracing::instrument(level = "debug", skip_all, fields(template_id = %id))]
    pub async fn delete_template(&self, id: &TemplateId) -> Result<()> {
        let operation = operation_on("delete template", "template", id.as_str())?;
        let path = ["templates", id.as_str()];
        self.execute(&Call::new(operation, Method::DELETE, &path))
            .await
            .map(drop)
    }

    /// Lists the public template catalog (`GET /v2/catalog/templates?source=…`): pod and
    /// serverless templates (see [`Template::serverless`]), at most 100, not paginated.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`](crate::Error::InvalidRequest) for a source the API does not
    /// know; otherwise as [`Client::list_templates`].
    #[tracing::instrument(level = "debug", skip_all, fields(source = %source))]
    pub async fn list_public_templates(&self, source: &TemplateSource) -> Result<Vec<Template>> {
        let operation = format!("list {source} public templates");
        if let TemplateSource::Unknown(other) = source {
            return Err(crate::checks::invalid(
                &operation,
                format!("`source` {other:?} is not one of official, verified, community"),
            ));
        }
        let call = Call::new(operation, Method::GET, &["catalog", "templates"])
            .query("source", source.as_str());
        Ok(self.json::<TemplateList>(&call).await?.templates)
    }
}
