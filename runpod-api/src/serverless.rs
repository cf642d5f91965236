//! Serverless endpoint operations (`/v2/serverless`): list, create, get, update, delete, the
//! workers, the releases, and a worker's log stream.

use futures_util::StreamExt;
use http::Method;

use crate::Result;
use crate::client::{Call, Client};
use crate::error::Error;
use crate::models::{
    CreateEndpointRequest, Endpoint, EndpointId, EndpointList, ReleaseList, UpdateEndpointRequest,
    WorkerId, WorkerList,
};
use crate::ops::{DEFAULT_LOG_IDLE_TIMEOUT, LogOwner, LogStream};
use crate::params::LogParams;

impl Client {
    /// Lists the account's serverless endpoints (`GET /v2/serverless`).
    ///
    /// # Errors
    ///
    /// An [`Error::Api`] answer (401, 403, 429 after retries, 5xx after retries), transport
    /// failures and timeouts after retries, or [`Error::Decode`].
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn list_endpoints(&self) -> Result<Vec<Endpoint>> {
        let call = Call::new("list serverless endpoints", Method::GET, &["serverless"]);
        Ok(self.json::<EndpointList>(&call).await?.endpoints)
    }

    /// Creates a serverless endpoint (`POST /v2/serverless`). It accepts jobs at once but has no
    /// running worker unless `workers.min` is above 0.
    ///
    /// The call is retried only when the API provably did not act on it (429, or no
    /// connection). After a timeout or 5xx the endpoint may exist: list the endpoints before
    /// creating it again.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`] before sending when the body breaks a rule of the spec (see
    /// [`CreateEndpointRequest`]: no image and no template, neither or both of GPU and CPU,
    /// a scaler that does not fit the type, worker bounds, CUDA constraints, ...); API answers
    /// 400, 401, 403, 404 (unknown template), 422 ([`Error::violations`]), 429.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use runpod_api::Client;
    /// use runpod_api::models::{
    ///     CreateEndpointRequest, EndpointGpuRequest, EndpointScaling, EndpointType,
    ///     UpdateEndpointRequest, WorkersConfig,
    /// };
    /// use runpod_api::params::LogParams;
    /// use futures_util::StreamExt;
    ///
    /// # async fn run() -> runpod_api::Result<()> {
    /// let client = Client::from_env()?;
    /// let request = CreateEndpointRequest::new(
    ///     "image-generator",
    ///     EndpointType::Queue,
    ///     EndpointScaling::queue_delay(4.0),
    /// )
    /// .image("runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404")
    /// .gpu(EndpointGpuRequest::new(["ADA_24"]).count(1))
    /// .workers(WorkersConfig::new(0, 5).idle_timeout(5));
    /// let endpoint = client.create_endpoint(&request).await?;
    ///
    /// let scale_up = UpdateEndpointRequest::new().workers(WorkersConfig::new(1, 10));
    /// client.update_endpoint(&endpoint.id, &scale_up).await?;
    ///
    /// let workers = client.list_endpoint_workers(&endpoint.id).await?;
    /// if let Some(worker) = workers.workers.first() {
    ///     let mut logs = client
    ///         .worker_logs(&endpoint.id, &worker.id, &LogParams::default().tail(50))
    ///         .await?;
    ///     while let Some(line) = logs.next().await {
    ///         println!("{}", line?.line);
    ///     }
    /// }
    /// client.delete_endpoint(&endpoint.id).await?;
    /// # Ok(())
    /// # }
    /// ```
    #[tracing::instrument(level = "debug", skip_all, fields(name = %request.name))]
    pub async fn create_endpoint(&self, request: &CreateEndpointRequest) -> Result<Endpoint> {
        let operation = format!("create serverless endpoint {:?}", request.name);
        request.check().map_err(|reason| Error::InvalidRequest {
            operation: operation.clone(),
            reason,
        })?;
        let call = Call::new(operation, Method::POST, &["serverless"]).json_body(request)?;
        self.json(&call).await
    }

    /// Gets one serverless endpoint (`GET /v2/serverless/{id}`).
    ///
    /// # Errors
    ///
    /// As [`Client::list_endpoints`], plus 404 ([`Error::is_not_found`]) for an unknown
    /// endpoint.
    #[tracing::instrument(level = "debug", skip_all, fields(endpoint_id = %id))]
    pub async fn get_endpoint(&self, id: &EndpointId) -> Result<Endpoint> {
        let path = ["serverless", id.as_str()];
        let call = Call::new(format!("get serverless endpoint {id}"), Method::GET, &path);
        self.json(&call).await
    }

    /// Changes a serverless endpoint (`PATCH /v2/serverless/{id}`); only the fields set change.
    /// Worker and scaler settings apply promptly; container changes roll out as a new release
    /// (see [`Client::list_endpoint_releases`]).
    ///
    /// Not retried after it may have reached the server: a repeated container change could
    /// cut a second release.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`] for an empty update or a broken rule of the spec (see
    /// [`UpdateEndpointRequest`]); API answers 400 (such as `gpu` on a CPU endpoint), 404, 422
    /// and the usual transport errors.
    #[tracing::instrument(level = "debug", skip_all, fields(endpoint_id = %id))]
    pub async fn update_endpoint(
        &self,
        id: &EndpointId,
        request: &UpdateEndpointRequest,
    ) -> Result<Endpoint> {
        let operation = format!("update serverless endpoint {id}");
        request.check().map_err(|reason| Error::InvalidRequest {
            operation: operation.clone(),
            reason,
        })?;
        let path = ["serverless", id.as_str()];
        let call = Call::new(operation, Method::PATCH, &path).json_body(request)?;
        self.json(&call).await
    }

    /// Deletes a serverless endpoint with its bound template (`DELETE /v2/serverless/{id}`):
    /// workers stop and queued or running jobs are cancelled. A repeated delete gets 404.
    ///
    /// # Errors
    ///
    /// API answers 404 and the usual transport errors.
    #[tracing::instrument(level = "debug", skip_all, fields(endpoint_id = %id))]
    pub async fn delete_endpoint(&self, id: &EndpointId) -> Result<()> {
        let path = ["serverless", id.as_str()];
        let call = Call::new(
            format!("delete serverless endpoint {id}"),
            Method::DELETE,
            &path,
        );
        self.execute(&call).await.map(drop)
    }

    /// The active workers of an endpoint with counts per state
    /// (`GET /v2/serverless/{id}/workers`).
    ///
    /// # Errors
    ///
    /// As [`Client::get_endpoint`].
    #[tracing::instrument(level = "debug", skip_all, fields(endpoint_id = %id))]
    pub async fn list_endpoint_workers(&self, id: &EndpointId) -> Result<WorkerList> {
        let path = ["serverless", id.as_str(), "workers"];
        let call = Call::new(
            format!("list workers of serverless endpoint {id}"),
            Method::GET,
            &path,
        );
        self.json(&call).await
    }

    /// The release history of an endpoint, newest first, with the rollout state of the
    /// current version (`GET /v2/serverless/{id}/releases`).
    ///
    /// # Errors
    ///
    /// As [`Client::get_endpoint`].
    #[tracing::instrument(level = "debug", skip_all, fields(endpoint_id = %id))]
    pub async fn list_endpoint_releases(&self, id: &EndpointId) -> Result<ReleaseList> {
        let path = ["serverless", id.as_str(), "releases"];
        let call = Call::new(
            format!("list releases of serverless endpoint {id}"),
            Method::GET,
            &path,
        );
        self.json(&call).await
    }

    /// Streams a worker's logs (`GET /v2/serverless/{id}/workers/{workerId}/logs`,
    /// server-sent events) as typed lines. Resume after a break with
    /// [`LogParams::last_event_id`] set to the last line's `event_id`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`] for a `tail` above 5000; opening the stream fails like
    /// [`Client::get_endpoint`] (404 for an unknown endpoint or worker); items of the stream
    /// are [`Error::WorkerLogStream`] when the connection breaks, stays silent past the idle
    /// timeout, or sends an unreadable event.
    #[tracing::instrument(
        level = "debug",
        skip_all,
        fields(endpoint_id = %id, worker_id = %worker_id)
    )]
    pub async fn worker_logs(
        &self,
        id: &EndpointId,
        worker_id: &WorkerId,
        params: &LogParams,
    ) -> Result<LogStream> {
        let path = [
            "serverless",
            id.as_str(),
            "workers",
            worker_id.as_str(),
            "logs",
        ];
        let mut call = Call::new(
            format!("stream logs of worker {worker_id} of serverless endpoint {id}"),
            Method::GET,
            &path,
        );
        params.check().map_err(|reason| Error::InvalidRequest {
            operation: call.operation.clone(),
            reason,
        })?;
        call.query = params.to_query();
        call.headers
            .push(("accept", "text/event-stream".to_owned()));
        if let Some(cursor) = &params.last_event_id {
            call.headers.push(("last-event-id", cursor.clone()));
        }
        call.streaming = true;
        let response = self.open_stream(&call).await?;
        Ok(LogStream::new(
            LogOwner::Worker {
                endpoint_id: id.clone(),
                worker_id: worker_id.clone(),
            },
            response.bytes_stream().boxed(),
            DEFAULT_LOG_IDLE_TIMEOUT,
        ))
    }
}
