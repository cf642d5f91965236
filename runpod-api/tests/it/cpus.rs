//! The CPU catalog: exact queries, fixtures and the checks made before sending.

use runpod_api::Error;
use runpod_api::models::{Availability, CpuProduct};
use runpod_api::params::CpuCatalogParams;
use wiremock::Mock;
use wiremock::matchers::{method, path};

use crate::exact::{assert_sent, only_request};
use crate::{client, fixture, json_response, problem, server};

#[tokio::test]
async fn list_cpu_types_sends_availability_filters() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/catalog/cpus"))
        .respond_with(json_response(200, fixture("cpu_types.json")))
        .expect(1)
        .mount(&server)
        .await;
    let params = CpuCatalogParams::default()
        .availability([CpuProduct::Pod, CpuProduct::Serverless])
        .vcpu_count(8);
    let cpus = client(&server).list_cpu_types(&params).await.expect("cpus");
    assert_sent(
        &only_request(&server).await,
        "GET",
        "/v2/catalog/cpus",
        Some("include=AVAILABILITY&product=POD%2CSERVERLESS&vcpuCount=8"),
    );
    assert_eq!(cpus.len(), 2);
    let first = &cpus[0];
    assert_eq!((first.vcpu.min, first.vcpu.max), (2, 32));
    assert!((first.ram_gb(4) - 10.0).abs() < 1e-9);
    assert!((first.pod_price_per_hour(4) - 0.16).abs() < 1e-9);
    assert_eq!(first.availability, Some(Availability::Medium));
    assert_eq!(first.data_centers.as_ref().map(Vec::len), Some(1));
    assert_eq!(cpus[1].availability, Some(Availability::None));
    assert_eq!(cpus[1].data_centers, None);
}

#[tokio::test]
async fn list_cpu_types_without_filters_sends_no_query() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/catalog/cpus"))
        .respond_with(json_response(200, fixture("cpu_types.json")))
        .mount(&server)
        .await;
    client(&server)
        .list_cpu_types(&CpuCatalogParams::default())
        .await
        .expect("cpus");
    assert_sent(
        &only_request(&server).await,
        "GET",
        "/v2/catalog/cpus",
        None,
    );
}

#[tokio::test]
async fn get_cpu_type_and_its_not_found() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/catalog/cpus/cpu3c-2-4"))
        .respond_with(json_response(200, fixture("cpu_type.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/catalog/cpus/cpu9z"))
        .respond_with(problem(404, "Not Found", "cpu type not found"))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);
    let params = CpuCatalogParams::default().availability([CpuProduct::Pod]);
    let cpu = client
        .get_cpu_type("cpu3c-2-4", &params)
        .await
        .expect("cpu");
    assert_eq!(cpu.group, "Gen 3");
    let requests = server.received_requests().await.unwrap_or_default();
    assert_sent(
        &requests[0],
        "GET",
        "/v2/catalog/cpus/cpu3c-2-4",
        Some("include=AVAILABILITY&product=POD"),
    );
    let error = client
        .get_cpu_type("cpu9z", &CpuCatalogParams::default())
        .await
        .expect_err("404");
    assert!(error.is_not_found(), "{error:?}");
}

#[tokio::test]
async fn invalid_cpu_catalog_queries_fail_before_sending() {
    let server = server().await;
    let client = client(&server);
    let mut errors = vec![
        client
            .list_cpu_types(&CpuCatalogParams::default().vcpu_count(4))
            .await
            .expect_err("needs availability"),
        client
            .list_cpu_types(
                &CpuCatalogParams::default()
                    .availability([CpuProduct::Pod])
                    .vcpu_count(3),
            )
            .await
            .expect_err("power of two"),
        client
            .list_cpu_types(
                &CpuCatalogParams::default().availability([CpuProduct::from("CLUSTER")]),
            )
            .await
            .expect_err("unknown product"),
    ];
    errors.push(
        client
            .get_cpu_type("", &CpuCatalogParams::default())
            .await
            .expect_err("empty id"),
    );
    for error in &errors {
        assert!(matches!(error, Error::InvalidRequest { .. }), "{error:?}");
    }
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    insta::assert_snapshot!("invalid_cpu_catalog_queries", text.join("\n"));
    assert!(
        server
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
}
