//! Cluster operations (`/v2/clusters`): list, create, get, rename, delete, and the member pods.

use http::Method;

use crate::Result;
use crate::client::{Call, Client, Retry};
use crate::error::Error;
use crate::models::{
    Cluster, ClusterId, ClusterList, CreateClusterRequest, Pod, PodList, UpdateClusterRequest,
};

impl Client {
    /// Lists the account's clusters (`GET /v2/clusters`).
    ///
    /// # Errors
    ///
    /// An [`Error::Api`] answer (401, 403, 429 after retries, 5xx after retries), transport
    /// failures and timeouts after retries, or [`Error::Decode`].
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn list_clusters(&self) -> Result<Vec<Cluster>> {
        let call = Call::new("list clusters", Method::GET, &["clusters"]);
        Ok(self.json::<ClusterList>(&call).await?.clusters)
    }

    /// Creates a multi-node cluster (`POST /v2/clusters`); the container settings apply to every
    /// member pod.
    ///
    /// The call is retried only when the API provably did not act on it (429, or no
    /// connection). After a timeout or 5xx the cluster may exist: list the clusters before
    /// creating it again.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`] before sending when the body breaks a rule of the spec (empty
    /// name, `podCount` outside 2 to 250, no GPUs per pod, disk below 1 GB, clashing mounts);
    /// API answers 400 (including no capacity), 401, 403, 422 ([`Error::violations`]), 429.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use runpod_api::models::{
    ///     ClusterCompute, ClusterType, CreateClusterRequest, UpdateClusterRequest,
    /// };
    /// use runpod_api::Client;
    ///
    /// # async fn run() -> runpod_api::Result<()> {
    /// let client = Client::from_env()?;
    /// let request = CreateClusterRequest::new(
    ///     "train",
    ///     ClusterType::Training,
    ///     ClusterCompute::new("NVIDIA H100 80GB HBM3", 8, 2),
    /// )
    /// .image("runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404")
    /// .port("22/tcp")
    /// .start_ssh(true);
    /// let cluster = client.create_cluster(&request).await?;
    /// println!("{} GPUs", cluster.total_gpus());
    ///
    /// for pod in client.list_cluster_pods(&cluster.id).await? {
    ///     println!("{} {}", pod.id, pod.status);
    /// }
    /// client
    ///     .update_cluster(&cluster.id, &UpdateClusterRequest::new().name("train-2"))
    ///     .await?;
    /// client.delete_cluster(&cluster.id).await?;
    /// # Ok(())
    /// # }
    /// ```
    #[tracing::instrument(level = "debug", skip_all, fields(name = %request.name))]
    pub async fn create_cluster(&self, request: &CreateClusterRequest) -> Result<Cluster> {
        let operation = format!("create cluster {:?}", request.name);
        request.check().map_err(|reason| Error::InvalidRequest {
            operation: operation.clone(),
            reason,
        })?;
        let call = Call::new(operation, Method::POST, &["clusters"]).json_body(request)?;
        self.json(&call).await
    }

    /// Gets one cluster (`GET /v2/clusters/{id}`); its `pods` field only counts the members.
    ///
    /// # Errors
    ///
    /// As [`Client::list_clusters`], plus 404 ([`Error::is_not_found`]) for an unknown cluster.
    #[tracing::instrument(level = "debug", skip_all, fields(cluster_id = %id))]
    pub async fn get_cluster(&self, id: &ClusterId) -> Result<Cluster> {
        let path = ["clusters", id.as_str()];
        let call = Call::new(format!("get cluster {id}"), Method::GET, &path);
        self.json(&call).await
    }

    /// Renames a cluster (`PATCH /v2/clusters/{id}`); nothing else about a cluster can change.
    ///
    /// Retried like a read: setting the same name twice has the effect of once.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`] when no name or an empty one is set; API answers 400, 404,
    /// 422 and the usual transport errors.
    #[tracing::instrument(level = "debug", skip_all, fields(cluster_id = %id))]
    pub async fn update_cluster(
        &self,
        id: &ClusterId,
        request: &UpdateClusterRequest,
    ) -> Result<Cluster> {
        let operation = format!("rename cluster {id}");
        request.check().map_err(|reason| Error::InvalidRequest {
            operation: operation.clone(),
            reason,
        })?;
        let path = ["clusters", id.as_str()];
        let call = Call::new(operation, Method::PATCH, &path)
            .json_body(request)?
            .retry(Retry::Always);
        self.json(&call).await
    }

    /// Deletes a cluster and terminates all its member pods (`DELETE /v2/clusters/{id}`). A
    /// repeated delete gets 404.
    ///
    /// # Errors
    ///
    /// API answers 404 and the usual transport errors.
    #[tracing::instrument(level = "debug", skip_all, fields(cluster_id = %id))]
    pub async fn delete_cluster(&self, id: &ClusterId) -> Result<()> {
        let path = ["clusters", id.as_str()];
        let call = Call::new(format!("delete cluster {id}"), Method::DELETE, &path);
        self.execute(&call).await.map(drop)
    }

    /// The member pods of a cluster, each a full [`Pod`] (`GET /v2/clusters/{id}/pods`).
    ///
    /// # Errors
    ///
    /// As [`Client::get_cluster`].
    #[tracing::instrument(level = "debug", skip_all, fields(cluster_id = %id))]
    pub async fn list_cluster_pods(&self, id: &ClusterId) -> Result<Vec<Pod>> {
        let path = ["clusters", id.as_str(), "pods"];
        let call = Call::new(format!("list pods of cluster {id}"), Method::GET, &path);
        Ok(self.json::<PodList>(&call).await?.pods)
    }
}
