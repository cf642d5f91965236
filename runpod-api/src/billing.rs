//! Billing operations beyond pods (`/v2/billing`, `/v2/billing/{serverless, endpoints,
//! network-volumes, clusters}`); pod billing is [`Client::pod_billing`].

use http::Method;
use serde::de::DeserializeOwned;

use crate::Result;
use crate::client::{Call, Client};
use crate::error::Error;
use crate::models::{
    AccountBilling, ClusterBilling, NetworkVolumeBilling, PublicEndpointBilling, ServerlessBilling,
};
use crate::params::{BillingParams, BillingScope};

impl Client {
    /// The account's spend across every billable resource family, per time bucket
    /// (`GET /v2/billing`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`] for a window combined with `last_n`, `last_n` of 0, or an id
    /// filter (this operation takes none); API answers 401, 403, 429 and the usual transport
    /// errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use runpod_api::Client;
    /// use runpod_api::models::{BillingBucketSize, ClusterId};
    /// use runpod_api::params::BillingParams;
    ///
    /// # async fn run() -> runpod_api::Result<()> {
    /// let client = Client::from_env()?;
    /// let last_week = BillingParams::default()
    ///     .bucket_size(BillingBucketSize::Day)
    ///     .last_n(7);
    /// let billing = client.account_billing(&last_week).await?;
    /// println!("spent ${:.2} this week", billing.metadata.totals.total_amount);
    ///
    /// let one_cluster = last_week.cluster_id(ClusterId::new("cluster_abc123"));
    /// let cluster = client.cluster_billing(&one_cluster).await?;
    /// println!("of which ${:.2} on the cluster", cluster.metadata.totals.total_amount);
    /// # Ok(())
    /// # }
    /// ```
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn account_billing(&self, params: &BillingParams) -> Result<AccountBilling> {
        self.billing(
            "get account billing",
            &["billing"],
            BillingScope::Account,
            params,
        )
        .await
    }

    /// Serverless endpoint billing, per endpoint per bucket (`GET /v2/billing/serverless`);
    /// narrow it to one endpoint with [`BillingParams::serverless_id`].
    ///
    /// # Errors
    ///
    /// As [`Client::account_billing`]; the only id filter allowed is `serverless_id`.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn serverless_billing(&self, params: &BillingParams) -> Result<ServerlessBilling> {
        self.billing(
            "get serverless billing",
            &["billing", "serverless"],
            BillingScope::Serverless,
            params,
        )
        .await
    }

    /// Billing of RunPod's public endpoints (hosted models), per bucket
    /// (`GET /v2/billing/endpoints`). Your own serverless endpoints are in
    /// [`Client::serverless_billing`].
    ///
    /// # Errors
    ///
    /// As [`Client::account_billing`]; no id filter is allowed.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn public_endpoint_billing(
        &self,
        params: &BillingParams,
    ) -> Result<PublicEndpointBilling> {
        self.billing(
            "get public endpoint billing",
            &["billing", "endpoints"],
            BillingScope::PublicEndpoints,
            params,
        )
        .await
    }

    /// Network volume billing, per volume per bucket (`GET /v2/billing/network-volumes`);
    /// narrow it to one volume with [`BillingParams::network_volume_id`].
    ///
    /// # Errors
    ///
    /// As [`Client::account_billing`]; the only id filter allowed is `network_volume_id`.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn network_volume_billing(
        &self,
        params: &BillingParams,
    ) -> Result<NetworkVolumeBilling> {
        self.billing(
            "get network volume billing",
            &["billing", "network-volumes"],
            BillingScope::NetworkVolumes,
            params,
        )
        .await
    }

    /// Cluster billing, per cluster per bucket (`GET /v2/billing/clusters`); narrow it to one
    /// cluster with [`BillingParams::cluster_id`].
    ///
    /// # Errors
    ///
    /// As [`Client::account_billing`]; the only id filter allowed is `cluster_id`.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn cluster_billing(&self, params: &BillingParams) -> Result<ClusterBilling> {
        self.billing(
            "get cluster billing",
            &["billing", "clusters"],
            BillingScope::Clusters,
            params,
        )
        .await
    }

    async fn billing<T: DeserializeOwned>(
        &self,
        operation: &str,
        path: &[&str],
        scope: BillingScope,
        params: &BillingParams,
    ) -> Result<T> {
        let mut call = Call::new(operation, Method::GET, path);
        params
            .check_for(scope)
            .map_err(|reason| Error::InvalidRequest {
                operation: operation.to_owned(),
                reason,
            })?;
        call.query = params.to_query();
        self.json(&call).await
    }
}
