//! Catalogs, account SSH keys and billing.

use runpod_api::models::{
    Availability, BillingBucketSize, Cloud, DataCenterInclude, DataCenterRegion, Product, SshKeys,
};
use runpod_api::params::{BillingParams, DataCenterParams, GpuCatalogParams};
use wiremock::matchers::{body_json, header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, ResponseTemplate};

use crate::{KEY, bodies, client, count, fixture, json_response, server};

const NEW_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherKeyMaterialForTests rpb";

#[tokio::test]
async fn gpu_catalog_sends_availability_filters() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/catalog/gpus"))
        .and(query_param("include", "AVAILABILITY"))
        .and(query_param("product", "POD"))
        .and(query_param("count", "2"))
        .and(query_param("cloud", "COMMUNITY"))
        .and(query_param("countryCodes", "FR,DE"))
        .and(query_param("minCudaVersion", "12.1"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(json_response(200, fixture("gpu_types.json")))
        .expect(1)
        .mount(&server)
        .await;

    let params = GpuCatalogParams::default()
        .availability([Product::Pod])
        .count(2)
        .cloud(Cloud::Community)
        .country_code("FR")
        .country_code("DE")
        .min_cuda_version("12.1");
    let gpus = client(&server).list_gpu_types(&params).await.expect("gpus");
    assert_eq!(gpus.len(), 2);
    assert_eq!(gpus[0].availability, Some(Availability::High));
    assert_eq!(gpus[0].price_on(&Cloud::Community), Some(0.34));
    assert_eq!(gpus[1].pool, None);
    assert_eq!(gpus[1].data_centers, None);
}

#[tokio::test]
async fn gpu_catalog_filters_without_availability_are_refused() {
    let server = server().await;
    let error = client(&server)
        .list_gpu_types(&GpuCatalogParams::default().count(2))
        .await
        .expect_err("needs availability");
    assert!(error.to_string().contains("product context"), "{error}");
    let both = GpuCatalogParams::default()
        .availability([Product::Pod])
        .cuda_version("12.8")
        .min_cuda_version("12");
    assert!(client(&server).list_gpu_types(&both).await.is_err());
    assert_eq!(count(&server, "GET", "/v2/catalog/gpus").await, 0);
}

#[tokio::test]
async fn get_gpu_type_encodes_the_id() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/catalog/gpus/NVIDIA%20GeForce%20RTX%204090"))
        .and(query_param_is_missing("include"))
        .respond_with(json_response(200, fixture("gpu_type.json")))
        .expect(1)
        .mount(&server)
        .await;
    let gpu = client(&server)
        .get_gpu_type("NVIDIA GeForce RTX 4090", &GpuCatalogParams::default())
        .await
        .expect("gpu");
    assert_eq!(gpu.memory, 24);
    assert_eq!(gpu.max_count.community, 4);
    assert_eq!(gpu.cuda_versions.as_ref().map(Vec::len), Some(2));
}

#[tokio::test]
async fn data_center_catalog() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/catalog/datacenters"))
        .and(query_param("include", "GPU_AVAILABILITY"))
        .and(query_param("regions", "EUROPE,ASIA"))
        .and(query_param("globalNetwork", "true"))
        .respond_with(json_response(200, fixture("data_centers.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/catalog/datacenters/EU-RO-1"))
        .and(query_param("include", "GPU_AVAILABILITY,CPU_AVAILABILITY"))
        .respond_with(json_response(200, fixture("data_center.json")))
        .expect(1)
        .mount(&server)
        .await;

    let client = client(&server);
    let params = DataCenterParams::default()
        .include(DataCenterInclude::GpuAvailability)
        .region(DataCenterRegion::Europe)
        .region(DataCenterRegion::Asia)
        .global_network(true);
    let centers = client.list_data_centers(&params).await.expect("list");
    assert_eq!(centers.len(), 2);
    assert_eq!(centers[0].region, DataCenterRegion::Europe);
    let one = client
        .get_data_center(
            "EU-RO-1",
            &[
                DataCenterInclude::GpuAvailability,
                DataCenterInclude::CpuAvailability,
            ],
        )
        .await
        .expect("get");
    assert_eq!(one.gpu_availability.map(|list| list.len()), Some(1));
}

#[tokio::test]
async fn add_ssh_key_keeps_existing_keys() {
    let server = server().await;
    let existing = fixture("ssh_keys.json");
    Mock::given(method("GET"))
        .and(path("/v2/account/ssh-keys"))
        .respond_with(json_response(200, existing.clone()))
        .expect(1)
        .mount(&server)
        .await;
    let mut after: SshKeys = serde_json::from_str(&existing).expect("fixture");
    after.keys.push(NEW_KEY.to_owned());
    Mock::given(method("PUT"))
        .and(path("/v2/account/ssh-keys"))
        .and(body_json(&after))
        .respond_with(json_response(
            200,
            serde_json::to_string(&after).expect("json"),
        ))
        .expect(1)
        .mount(&server)
        .await;

    let keys = client(&server).add_ssh_key(NEW_KEY).await.expect("add key");
    assert_eq!(keys.keys.len(), 2);
    let sent = bodies(&server, "PUT", "/v2/account/ssh-keys").await;
    insta::assert_json_snapshot!("put_ssh_keys_body", sent[0]);
}

#[tokio::test]
async fn add_ssh_key_skips_a_key_already_registered() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/account/ssh-keys"))
        .respond_with(json_response(200, fixture("ssh_keys.json")))
        .mount(&server)
        .await;
    let same_material_other_comment =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILXGDN/SclOozk1xsDztpmhGiKkkrfQB9SKoO8dSIQQZ desktop";
    let keys = client(&server)
        .add_ssh_key(same_material_other_comment)
        .await
        .expect("no-op");
    assert_eq!(keys.keys.len(), 1);
    assert_eq!(count(&server, "PUT", "/v2/account/ssh-keys").await, 0);
}

#[tokio::test]
async fn private_key_material_is_refused_and_not_echoed() {
    let server = server().await;
    let private = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n";
    let error = client(&server)
        .set_ssh_keys(&SshKeys::new([private]))
        .await
        .expect_err("refused");
    let message = error.to_string();
    assert!(message.contains("never the private key"), "{message}");
    assert!(!message.contains("b3BlbnNzaC1rZXktdjEAAAAA"), "{message}");
    assert!(client(&server).add_ssh_key(private).await.is_err());
    assert!(
        server
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
}

#[tokio::test]
async fn pod_billing_with_filters() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/billing/pods"))
        .and(query_param("bucketSize", "day"))
        .and(query_param("lastN", "7"))
        .and(query_param("podId", "7h9k2m4n6p"))
        .respond_with(json_response(200, fixture("pod_billing.json")))
        .expect(1)
        .mount(&server)
        .await;
    let billing = client(&server)
        .pod_billing(
            &BillingParams::default()
                .bucket_size(BillingBucketSize::Day)
                .last_n(7)
                .pod_id("7h9k2m4n6p"),
        )
        .await
        .expect("billing");
    assert_eq!(billing.records.len(), 1);
    assert!((billing.metadata.totals.total_amount - 3.52).abs() < 1e-9);
    assert_eq!(billing.metadata.query.bucket_size, BillingBucketSize::Day);

    let both = BillingParams::default()
        .window("2026-11-01T00:00:00Z", "2026-11-30T00:00:00Z")
        .last_n(3);
    assert!(client(&server).pod_billing(&both).await.is_err());
}

#[tokio::test]
async fn empty_204_on_catalog_is_a_decode_error_with_excerpt() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/catalog/gpus"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>maintenance</html>"))
        .mount(&server)
        .await;
    let error = client(&server)
        .list_gpu_types(&GpuCatalogParams::default())
        .await
        .expect_err("not json");
    insta::assert_snapshot!("decode_error", error.to_string());
}
