//! Network volume operations (`/v2/network-volumes`).

use http::Method;

use crate::Result;
use crate::checks::{checked, operation_on};
use crate::client::{Call, Client, Retry};
use crate::models::{
    CreateNetworkVolumeRequest, NetworkVolume, NetworkVolumeId, NetworkVolumeList,
    UpdateNetworkVolumeRequest,
};

impl Client {
    /// Lists the account's network volumes (`GET /v2/network-volumes`).
    ///
    /// ```no_run
    /// use runpod_api::models::{
    ///     CreateNetworkVolumeRequest, CreatePodRequest, GpuRequest, Mounts,
    ///     UpdateNetworkVolumeRequest, VolumeType,
    /// };
    ///
    /// # async fn run(client: runpod_api::Client) -> runpod_api::Result<()> {
    /// let request = CreateNetworkVolumeRequest::new("projects", 50, "EU-RO-1")
    ///     .volume_type(VolumeType::Standard);
    /// let volume = client.create_network_volume(&request).await?;
    /// // Pods mounting the volume must run in its data center.
    /// let pod = CreatePodRequest::new("render")
    ///     .image("runpod/base:1.0.2-ubuntu2404")
    ///     .gpu(GpuRequest::new("NVIDIA GeForce RTX 4090"))
    ///     .data_center(volume.data_center.clone())
    ///     .mounts(Mounts::network(volume.id.clone(), "/runpod"));
    /// client.create_pod(&pod).await?;
    /// // Volumes only grow.
    /// let grow = UpdateNetworkVolumeRequest::new().size(100);
    /// client.update_network_volume(&volume.id, &grow).await?;
    /// println!("{} volumes", client.list_network_volumes().await?.len());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// An [`Error::Api`](crate::Error::Api) answer (401, 403, 429 and 5xx after retries),
    /// transport failures and timeouts after retries, or [`Error::Decode`](crate::Error::Decode).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn list_network_volumes(&self) -> Result<Vec<NetworkVolume>> {
        let call = Call::new("list network volumes", Method::GET, &["network-volumes"]);
        Ok(self.json::<NetworkVolumeList>(&call).await?.network_volumes)
    }

    /// Creates a network volume (`POST /v2/network-volumes`). It is billed until deleted.
    ///
    /// Retried only when the API provably did not act (429, or no connection): after a timeout
    /// or a 5xx the volume may exist, so list volumes before creating it again rather than pay
    /// for two.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`](crate::Error::InvalidRequest) before sending for an empty name
    /// or data center, a size outside 10 to 4096 GB, or an unknown volume type; API answers
    /// 400 (such as a data center without that tier), 402, 422, plus those of
    /// [`Client::list_network_volumes`].
    #[tracing::instrument(
        level = "debug",
        skip_all,
        fields(name = %request.name, data_center = %request.data_center)
    )]
    pub async fn create_network_volume(
        &self,
        request: &CreateNetworkVolumeRequest,
    ) -> Result<NetworkVolume> {
        let operation = format!("create network volume {:?}", request.name);
        checked(&operation, request.check())?;
        let call = Call::new(operation, Method::POST, &["network-volumes"]).json_body(request)?;
        self.json(&call).await
    }

    /// Gets a network volume (`GET /v2/network-volumes/{id}`).
    ///
    /// # Errors
    ///
    /// As [`Client::list_network_volumes`], plus 404
    /// ([`Error::is_not_found`](crate::Error::is_not_found)) for an unknown volume, and
    /// [`Error::InvalidRequest`](crate::Error::InvalidRequest) for an empty id.
    #[tracing::instrument(level = "debug", skip_all, fields(volume_id = %id))]
    pub async fn get_network_volume(&self, id: &NetworkVolumeId) -> Result<NetworkVolume> {
        let operation = operation_on("get network volume", "network volume", id.as_str())?;
        let path = ["network-volumes", id.as_str()];
        self.json(&Call::new(operation, Method::GET, &path)).await
    }

    /// Renames or grows a network volume (`PATCH /v2/network-volumes/{id}`).
    ///
    /// The update sets absolute values, so sending it twice has the effect of once: it is
    /// retried like a read.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`](crate::Error::InvalidRequest) for an update that changes
    /// nothing, an empty name or a size outside 10 to 4096 GB; API answers 400 (the new size is
    /// smaller than the current one), 404 and 422.
    #[tracing::instrument(level = "debug", skip_all, fields(volume_id = %id))]
    pub async fn update_network_volume(
        &self,
        id: &NetworkVolumeId,
        request: &UpdateNetworkVolumeRequest,
    ) -> Result<NetworkVolume> {
        let operation = operation_on("update network volume", "network volume", id.as_str())?;
        checked(&operation, request.check())?;
        let path = ["network-volumes", id.as_str()];
        let call = Call::new(operation, Method::PATCH, &path)
            .json_body(request)?
            .retry(Retry::Always);
        self.json(&call).await
    }

    /// Deletes a network volume and its data (`DELETE /v2/network-volumes/{id}`).
    ///
    /// # Errors
    ///
    /// API answers 404 for an unknown volume (a repeated delete included), and the usual
    /// transport errors.
    #[tracing::instrument(level = "debug", skip_all, fields(volume_id = %id))]
    pub async fn delete_network_volume(&self, id: &NetworkVolumeId) -> Result<()> {
        let operation = operation_on("delete network volume", "network volume", id.as_str())?;
        let path = ["network-volumes", id.as_str()];
        self.execute(&Call::new(operation, Method::DELETE, &path))
            .await
            .map(drop)
    }
}
