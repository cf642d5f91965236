//! Billing beyond pods: account, serverless, public endpoint, network volume and cluster billing.

use runpod_api::Error;
use runpod_api::models::{BillingBucketSize, ClusterId, EndpointId};
use runpod_api::params::BillingParams;
use wiremock::Mock;
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};

use crate::{KEY, client, fixture, json_response, server};

fn bearer() -> String {
    format!("Bearer {KEY}")
}

#[tokio::test]
async fn account_billing_sends_the_window_and_parses_every_component() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/billing"))
        .and(query_param("startTime", "2026-06-01T00:00:00Z"))
        .and(query_param("endTime", "2026-06-02T00:00:00Z"))
        .and(query_param("bucketSize", "day"))
        .and(query_param_is_missing("lastN"))
        .and(header("authorization", bearer().as_str()))
        .respond_with(json_response(200, fixture("account_billing.json")))
        .expect(1)
        .mount(&server)
        .await;
    let params = BillingParams::default()
        .window("2026-06-01T00:00:00Z", "2026-06-02T00:00:00Z")
        .bucket_size(BillingBucketSize::Day);
    let billing = client(&server)
        .account_billing(&params)
        .await
        .expect("billing");
    assert_eq!(billing.records.len(), 1);
    let amounts = &billing.records[0].amounts;
    assert!((amounts.total_amount - 42.34).abs() < 1e-9);
    assert!((amounts.endpoint_amount - 3.21).abs() < 1e-9);
    assert!((amounts.cluster_networking_amount - 0.24).abs() < 1e-9);
    assert_eq!(billing.metadata.record_count, 1);
    assert_eq!(billing.metadata.query.bucket_size, BillingBucketSize::Day);
}

#[tokio::test]
async fn serverless_billing_filters_one_endpoint() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/billing/serverless"))
        .and(query_param("serverlessId", "4m7x2k9q"))
        .and(query_param("lastN", "30"))
        .and(header("authorization", bearer().as_str()))
        .respond_with(json_response(200, fixture("serverless_billing.json")))
        .expect(1)
        .mount(&server)
        .await;
    let params = BillingParams::default()
        .last_n(30)
        .serverless_id(EndpointId::new("4m7x2k9q"));
    let billing = client(&server)
        .serverless_billing(&params)
        .await
        .expect("billing");
    assert_eq!(billing.records[0].serverless_id.as_str(), "4m7x2k9q");
    assert!((billing.records[0].amounts.fee_amount - 1.0).abs() < 1e-9);
    assert_eq!(billing.metadata.unique_serverless_count, 1);
    assert_eq!(
        billing.metadata.query.serverless_id.as_deref(),
        Some("4m7x2k9q")
    );
}

#[tokio::test]
async fn public_endpoint_billing() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/billing/endpoints"))
        .and(query_param("bucketSize", "hour"))
        .and(header("authorization", bearer().as_str()))
        .respond_with(json_response(200, fixture("public_endpoint_billing.json")))
        .expect(1)
        .mount(&server)
        .await;
    let billing = client(&server)
        .public_endpoint_billing(&BillingParams::default().bucket_size(BillingBucketSize::Hour))
        .await
        .expect("billing");
    assert!((billing.metadata.totals.total_amount - 3.21).abs() < 1e-9);
}

#[tokio::test]
async fn network_volume_billing_filters_one_volume() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/billing/network-volumes"))
        .and(query_param("networkVolumeId", "2q9m7x4c"))
        .and(header("authorization", bearer().as_str()))
        .respond_with(json_response(200, fixture("network_volume_billing.json")))
        .expect(1)
        .mount(&server)
        .await;
    let billing = client(&server)
        .network_volume_billing(&BillingParams::default().network_volume_id("2q9m7x4c"))
        .await
        .expect("billing");
    assert_eq!(billing.records[0].network_volume_id, "2q9m7x4c");
    assert!((billing.records[0].amounts.high_performance_amount - 5.79).abs() < 1e-9);
    assert_eq!(billing.metadata.unique_network_volume_count, 1);
}

#[tokio::test]
async fn cluster_billing_without_a_filter_lists_every_bucket() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/billing/clusters"))
        .and(query_param_is_missing("clusterId"))
        .and(header("authorization", bearer().as_str()))
        .respond_with(json_response(200, fixture("cluster_billing.json")))
        .expect(1)
        .mount(&server)
        .await;
    let billing = client(&server)
        .cluster_billing(&BillingParams::default())
        .await
        .expect("billing");
    assert_eq!(billing.records.len(), 2);
    assert_eq!(billing.records[1].cluster_id, ClusterId::new("5c2n8m4q"));
    assert!((billing.metadata.totals.networking_amount - 1.5).abs() < 1e-9);
    assert!(billing.metadata.query.cluster_id.is_none());
}

#[tokio::test]
async fn billing_filters_that_do_not_belong_fail_before_sending() {
    let server = server().await;
    let client = client(&server);
    let window_and_last = BillingParams::default()
        .window("2026-06-01T00:00:00Z", "2026-06-02T00:00:00Z")
        .last_n(3);
    let mut messages = Vec::new();
    let results = [
        client
            .account_billing(&BillingParams::default().pod_id("p1"))
            .await
            .map(drop),
        client
            .serverless_billing(&BillingParams::default().cluster_id("c1"))
            .await
            .map(drop),
        client
            .public_endpoint_billing(&BillingParams::default().serverless_id("e1"))
            .await
            .map(drop),
        client
            .network_volume_billing(&BillingParams::default().last_n(0))
            .await
            .map(drop),
        client.cluster_billing(&window_and_last).await.map(drop),
        client
            .pod_billing(&BillingParams::default().network_volume_id("v1"))
            .await
            .map(drop),
    ];
    for result in results {
        let error = result.expect_err("invalid");
        assert!(matches!(error, Error::InvalidRequest { .. }), "{error:?}");
        messages.push(error.to_string());
    }
    insta::assert_snapshot!("invalid_billing_params", messages.join("\n"));
    assert!(
        server
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
}
