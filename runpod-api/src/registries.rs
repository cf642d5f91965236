//! Container registry credentials (`/v2/registries`) and ECR delegations
//! (`/v2/registries/delegations`).

use http::Method;

use crate::Result;
use crate::checks::{checked, invalid, operation_on};
use crate::client::{Call, Client};
use crate::models::{
    CreateEcrDelegationRequest, CreateRegistryRequest, DelegationId, EcrDelegation,
    EcrDelegationList, Registry, RegistryId, RegistryList,
};

/// The path segment of the delegation collection, which shares `/v2/registries/{id}`'s shape.
const DELEGATIONS: &str = "delegations";

impl Client {
    /// Lists the account's container registry credentials (`GET /v2/registries`); only ids
    /// and names, never the credentials.
    ///
    /// ```no_run
    /// use runpod_api::models::{CreatePodRequest, CreateRegistryRequest, GpuRequest};
    ///
    /// # async fn run(client: runpod_api::Client) -> runpod_api::Result<()> {
    /// // Read the token from a secret store; it is never logged or shown in `Debug`.
    /// let token = std::env::var("REGISTRY_TOKEN").unwrap_or_default();
    /// let request = CreateRegistryRequest::new("ghcr", "my-user", token);
    /// let registry = client.create_registry(&request).await?;
    /// let pod = CreatePodRequest::new("private-image")
    ///     .image("ghcr.io/me/blender:4.2")
    ///     .registry(registry.id.clone())
    ///     .gpu(GpuRequest::new("NVIDIA GeForce RTX 4090"));
    /// client.create_pod(&pod).await?;
    /// for registry in client.list_registries().await? {
    ///     println!("{} {}", registry.id, registry.name);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// An [`Error::Api`](crate::Error::Api) answer (401, 403, 429 and 5xx after retries),
    /// transport failures and timeouts after retries, or [`Error::Decode`](crate::Error::Decode).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn list_registries(&self) -> Result<Vec<Registry>> {
        let call = Call::new("list registry credentials", Method::GET, &["registries"]);
        Ok(self.json::<RegistryList>(&call).await?.registries)
    }

    /// Stores a registry credential (`POST /v2/registries`). The password travels only in the
    /// request body; it is absent from logs, errors and `Debug` output.
    ///
    /// Retried only when the API provably did not act (429, or no connection).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`](crate::Error::InvalidRequest) before sending for an empty
    /// name, user name or password; API answers 400 and 422, plus those of
    /// [`Client::list_registries`].
    #[tracing::instrument(level = "debug", skip_all, fields(name = %request.name))]
    pub async fn create_registry(&self, request: &CreateRegistryRequest) -> Result<Registry> {
        let operation = format!("create registry credential {:?}", request.name);
        checked(&operation, request.check())?;
        let call = Call::new(operation, Method::POST, &["registries"]).json_body(request)?;
        self.json(&call).await
    }

    /// Gets a registry credential's id and name (`GET /v2/registries/{id}`).
    ///
    /// # Errors
    ///
    /// As [`Client::list_registries`], plus 404
    /// ([`Error::is_not_found`](crate::Error::is_not_found))
    /// for an unknown credential, and [`Error::InvalidRequest`](crate::Error::InvalidRequest)
    /// for an empty id or the id `delegations` (that path lists ECR delegations).
    #[tracing::instrument(level = "debug", skip_all, fields(registry_id = %id))]
    pub async fn get_registry(&self, id: &RegistryId) -> Result<Registry> {
        let operation = registry_operation("get registry credential", id)?;
        let path = ["registries", id.as_str()];
        self.json(&Call::new(operation, Method::GET, &path)).await
    }

    /// Deletes a registry credential (`DELETE /v2/registries/{id}`). Templates that name it
    /// lose the reference; pods using it block the delete.
    ///
    /// # Errors
    ///
    /// API answers 400 while a pod pulls with the credential, 404 for an unknown credential
    /// (a repeated delete included); [`Error::InvalidRequest`](crate::Error::InvalidRequest)
    /// as for [`Client::get_registry`].
    #[tracing::instrument(level = "debug", skip_all, fields(registry_id = %id))]
    pub async fn delete_registry(&self, id: &RegistryId) -> Result<()> {
        let operation = registry_operation("delete registry credential", id)?;
        let path = ["registries", id.as_str()];
        self.execute(&Call::new(operation, Method::DELETE, &path))
            .await
            .map(drop)
    }

    /// Lists the account's ECR delegations (`GET /v2/registries/delegations`).
    ///
    /// # Errors
    ///
    /// As [`Client::list_registries`].
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn list_ecr_delegations(&self) -> Result<Vec<EcrDelegation>> {
        let call = Call::new(
            "list ecr delegations",
            Method::GET,
            &["registries", DELEGATIONS],
        );
        Ok(self.json::<EcrDelegationList>(&call).await?.delegations)
    }

    /// Registers an ECR delegation (`POST /v2/registries/delegations`), letting RunPod pull
    /// from a private Amazon ECR repository.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`](crate::Error::InvalidRequest) before sending when `resource`
    /// is not an ECR ARN; API answers and the usual transport errors.
    #[tracing::instrument(level = "debug", skip_all, fields(resource = %request.resource))]
    pub async fn create_ecr_delegation(
        &self,
        request: &CreateEcrDelegationRequest,
    ) -> Result<EcrDelegation> {
        let operation = "create ecr delegation";
        checked(operation, request.check())?;
        let call =
            Call::new(operation, Method::POST, &["registries", DELEGATIONS]).json_body(request)?;
        self.json(&call).await
    }

    /// Revokes an ECR delegation (`DELETE /v2/registries/delegations/{id}`).
    ///
    /// # Errors
    ///
    /// API answer 404 for an unknown delegation (a repeated revoke included), the usual
    /// transport errors, and [`Error::InvalidRequest`](crate::Error::InvalidRequest) for an
    /// empty id.
    #[tracing::instrument(level = "debug", skip_all, fields(delegation_id = %id))]
    pub async fn revoke_ecr_delegation(&self, id: &DelegationId) -> Result<()> {
        let operation = operation_on("revoke ecr delegation", "delegation", id.as_str())?;
        let path = ["registries", DELEGATIONS, id.as_str()];
        self.execute(&Call::new(operation, Method::DELETE, &path))
            .await
            .map(drop)
    }
}

fn registry_operation(verb: &str, id: &RegistryId) -> Result<String> {
    let operation = operation_on(verb, "registry credential", id.as_str())?;
    if id.as_str() == DELEGATIONS {
        return Err(invalid(
            &operation,
            "`delegations` is not a registry credential id: /v2/registries/delegations is the \
             ECR delegation list (use list_ecr_delegations)",
        ));
    }
    Ok(operation)
}
