//! The contract check of templates, network volumes, registry credentials, ECR delegations and
//! the CPU catalog: their fixtures, the models parsed from them, and every kind of request body
//! the client builds validate against RunPod's OpenAPI document.

use runpod_api::models::{
    CpuType, CreateEcrDelegationRequest, CreateNetworkVolumeRequest, CreateRegistryRequest,
    CreateTemplateRequest, EcrDelegation, NetworkVolume, Registry, Template, TemplateCategory,
    TemplateMounts, UpdateNetworkVolumeRequest, UpdateTemplateRequest, VolumeType,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::contract::{check, contract};
use crate::fixture_json;

fn json(value: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).expect("serializes")
}

/// The fixture validates, and so does the model parsed from it, serialized back.
fn round_trip<T: DeserializeOwned + Serialize>(schema: &str, name: &str) {
    let value = fixture_json(name);
    check(schema, &value);
    let parsed: T = serde_json::from_value(value).expect("parses");
    check(schema, &json(&parsed));
}

#[test]
fn resource_fixtures_and_parsed_models_match_the_spec() {
    round_trip::<Template>("Template", "template.json");
    check(
        "ListTemplatesResponse",
        &fixture_json("templates_list.json"),
    );
    check(
        "ListTemplatesResponse",
        &fixture_json("public_templates.json"),
    );
    for value in fixture_json("templates_list.json")["templates"]
        .as_array()
        .expect("templates")
    {
        let template: Template = serde_json::from_value(value.clone()).expect("parses");
        check("Template", &json(&template));
    }
    round_trip::<NetworkVolume>("NetworkVolume", "network_volume.json");
    check(
        "ListNetworkVolumesResponse",
        &fixture_json("network_volumes_list.json"),
    );
    round_trip::<Registry>("Registry", "registry.json");
    check(
        "ListRegistriesResponse",
        &fixture_json("registries_list.json"),
    );
    round_trip::<EcrDelegation>("EcrDelegation", "ecr_delegation.json");
    check(
        "ListDelegationsResponse",
        &fixture_json("ecr_delegations_list.json"),
    );
    round_trip::<CpuType>("CpuType", "cpu_type.json");
    check("ListCpuTypesResponse", &fixture_json("cpu_types.json"));
}

#[test]
fn resource_request_bodies_match_the_spec() {
    for request in [
        crate::templates::full_create_request(),
        CreateTemplateRequest::new("minimal", "img"),
        CreateTemplateRequest::new("worker", "img")
            .serverless(true)
            .category(TemplateCategory::Cpu)
            .mounts(TemplateMounts::default()),
    ] {
        check("CreateTemplateRequest", &json(&request));
    }
    for request in [
        crate::templates::full_update_request(),
        UpdateTemplateRequest::new().name("renamed"),
        UpdateTemplateRequest::new().allowed_cuda_versions(["12.8"]),
    ] {
        check("UpdateTemplateRequest", &json(&request));
    }
    for request in [
        CreateNetworkVolumeRequest::new("v", 10, "EU-RO-1"),
        CreateNetworkVolumeRequest::new("v", 4096, "US-KS-2")
            .volume_type(VolumeType::HighPerformance),
        CreateNetworkVolumeRequest::new("v", 50, "US-KS-2").volume_type(VolumeType::Standard),
    ] {
        check("CreateNetworkVolumeRequest", &json(&request));
    }
    for request in [
        UpdateNetworkVolumeRequest::new().name("renamed"),
        UpdateNetworkVolumeRequest::new().size(200),
        UpdateNetworkVolumeRequest::new().name("both").size(4096),
    ] {
        check("UpdateNetworkVolumeRequest", &json(&request));
    }
    check(
        "CreateRegistryRequest",
        &json(&CreateRegistryRequest::new("hub", "user", "password")),
    );
    for request in [
        CreateEcrDelegationRequest::new("arn:aws:ecr:us-east-2:418399314813:repository/x"),
        CreateEcrDelegationRequest::new("arn:aws:ecr:us-east-2:418399314813:repository/x")
            .name("named"),
    ] {
        check("CreateDelegationRequest", &json(&request));
    }
}

/// The spec refuses what the client's own checks refuse, so the checks are not stricter by
/// mistake in these cases (and the contract check would notice a relaxed spec).
#[test]
fn the_spec_rejects_what_the_client_refuses() {
    let spec = contract();
    let cases = [
        (
            "CreateNetworkVolumeRequest",
            serde_json::json!({"name": "v", "size": 9, "dataCenter": "X"}),
        ),
        (
            "CreateNetworkVolumeRequest",
            serde_json::json!({"name": "v", "size": 4097, "dataCenter": "X"}),
        ),
        (
            "CreateNetworkVolumeRequest",
            serde_json::json!({"name": "", "size": 10, "dataCenter": "X"}),
        ),
        (
            "CreateNetworkVolumeRequest",
            serde_json::json!({"name": "v", "size": 10, "dataCenter": "X", "type": "ARCHIVE"}),
        ),
        ("UpdateNetworkVolumeRequest", serde_json::json!({})),
        (
            "CreateTemplateRequest",
            serde_json::json!({"name": "t", "image": "i", "disk": 0}),
        ),
        (
            "CreateTemplateRequest",
            serde_json::json!({"name": "t", "image": "i", "allowedCudaVersions": ["12"]}),
        ),
        (
            "CreateTemplateRequest",
            serde_json::json!({"name": "t", "image": "i", "category": "TPU"}),
        ),
        (
            "CreateTemplateRequest",
            serde_json::json!({
                "name": "t", "image": "i", "mounts": {"persistent": {"size": 5, "path": "/w"}}
            }),
        ),
        (
            "CreateTemplateRequest",
            serde_json::json!({"name": "t", "image": "i", "mounts": {"network": []}}),
        ),
        ("CreateTemplateRequest", serde_json::json!({"name": "t"})),
        (
            "CreateRegistryRequest",
            serde_json::json!({"name": "r", "username": "u", "password": ""}),
        ),
    ];
    for (schema, value) in cases {
        assert!(
            spec.validate(schema, &value).is_err(),
            "{schema} accepts {value}"
        );
    }
}
