//! The CPU catalog (`/v2/catalog/cpus`).

use http::Method;

use crate::Result;
use crate::checks::{checked, operation_on};
use crate::client::{Call, Client};
use crate::models::{CpuType, CpuTypeList};
use crate::params::CpuCatalogParams;

impl Client {
    /// Lists CPU flavors (`GET /v2/catalog/cpus`), with availability when asked.
    ///
    /// ```no_run
    /// use runpod_api::models::{CpuProduct, CpuRequest, CreatePodRequest};
    /// use runpod_api::params::CpuCatalogParams;
    ///
    /// # async fn run(client: runpod_api::Client) -> runpod_api::Result<()> {
    /// let params = CpuCatalogParams::default()
    ///     .availability([CpuProduct::Pod])
    ///     .vcpu_count(4);
    /// let cpus = client.list_cpu_types(&params).await?;
    /// if let Some(cpu) = cpus.iter().find(|cpu| cpu.availability.is_some()) {
    ///     println!("{}: ${:.2}/h for 4 vCPUs", cpu.id, cpu.pod_price_per_hour(4));
    ///     let pod = CreatePodRequest::new("cpu")
    ///         .image("runpod/base:1.0.2-ubuntu2404")
    ///         .cpu(CpuRequest::new(cpu.id.clone(), 4));
    ///     client.create_pod(&pod).await?;
    /// }
    /// let one = client.get_cpu_type("cpu5c", &CpuCatalogParams::default()).await?;
    /// println!("{} GB RAM per vCPU", one.ram_gb_per_vcpu);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`](crate::Error::InvalidRequest) for a vCPU count without an
    /// availability context or not a power of two of at least 2, or an unknown product; API
    /// answers 400, 422 and the usual transport errors.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn list_cpu_types(&self, params: &CpuCatalogParams) -> Result<Vec<CpuType>> {
        let mut call = Call::new("list cpu types", Method::GET, &["catalog", "cpus"]);
        checked(&call.operation, params.check())?;
        call.query = params.to_query();
        Ok(self.json::<CpuTypeList>(&call).await?.cpus)
    }

    /// Gets one CPU flavor (`GET /v2/catalog/cpus/{id}`).
    ///
    /// # Errors
    ///
    /// As [`Client::list_cpu_types`], plus 404
    /// ([`Error::is_not_found`](crate::Error::is_not_found))
    /// for an unknown flavor and [`Error::InvalidRequest`](crate::Error::InvalidRequest) for an
    /// empty id.
    #[tracing::instrument(level = "debug", skip_all, fields(cpu_id = %id))]
    pub async fn get_cpu_type(&self, id: &str, params: &CpuCatalogParams) -> Result<CpuType> {
        operation_on("get cpu type", "cpu type", id)?;
        let path = ["catalog", "cpus", id];
        let mut call = Call::new(format!("get cpu type {id:?}"), Method::GET, &path);
        checked(&call.operation, params.check())?;
        call.query = params.to_query();
        self.json(&call).await
    }
}
