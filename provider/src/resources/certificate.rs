//! `postern_certificate`: a certificate the edge's HTTPS listener serves. Either an upload
//! (`certificate_pem` and `private_key_pem`: served for its names at once, before any ACME
//! certificate for them) or names the edge obtains one for by ACME (`names`, e.g. a
//! wildcard, by dns-01). `private_key_pem` is write-only (Terraform 1.11+): the provider reads
//! it from the configuration when it creates the certificate and it is never in plan or
//! state; the edge never returns it.
//!
//! It implements [`Resource`] directly rather than the shared edge-object lifecycle: a
//! certificate has no version to `If-Match` and no connector to roll out to, every change
//! replaces it, and its key comes from the configuration, not the plan.

use postern_schema::api::{Certificate, CertificateSpec};
use postern_schema::rules;
use postern_schema::secret::Secret;
use serde::{Deserialize, Serialize};

use crate::framework::{
    Attribute, AttributePath, CreateRequest, DeleteRequest, Diagnostics, ReadRequest, Resource,
    Schema, StateResponse, Type, UpdateRequest, Value, async_trait,
};
use crate::postern::api_error::{Operation, diagnose};
use crate::postern::contract::{Findings, known_elements, known_str};
use crate::postern::provider_data::ProviderData;

/// State (and configuration) of a `postern_certificate`; no `Debug`: decoded from the
/// configuration it holds the private key.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct CertificateModel {
    /// The certificate's id on the edge.
    pub(crate) id: Option<String>,
    /// The names it covers: given for ACME, read from the certificate for an upload.
    pub(crate) names: Option<Vec<String>>,
    /// The chain, PEM, as configured.
    pub(crate) certificate_pem: Option<String>,
    /// The key, PEM: only in the configuration (write-only).
    pub(crate) private_key_pem: Option<String>,
    /// `acme` or `uploaded`.
    pub(crate) source: Option<String>,
    /// `pending`, `valid` or `failed`.
    pub(crate) status: Option<String>,
    /// RFC 3339.
    pub(crate) not_after: Option<String>,
    /// Why obtaining or renewing it last failed.
    pub(crate) last_error: Option<String>,
}

impl CertificateModel {
    /// The state for `certificate` as the edge returned it; the chain stays as configured
    /// (the edge does not return it), the key is never kept.
    fn from_certificate(certificate: &Certificate, known: &CertificateModel) -> Self {
        Self {
            id: Some(certificate.id.clone()),
            names: Some(certificate.names.clone()),
            certificate_pem: known.certificate_pem.clone(),
            private_key_pem: None,
            source: Some(certificate.source.as_str().to_string()),
            status: Some(certificate.status.as_str().to_string()),
            not_after: certificate.not_after.clone(),
            last_error: certificate.last_error.clone(),
        }
    }
}

/// The `postern_certificate` resource.
pub(crate) struct CertificateResource;

const KIND: &str = "certificate";

#[async_trait]
impl Resource<ProviderData> for CertificateResource {
    fn type_name(&self) -> &'static str {
        "postern_certificate"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            "A certificate the edge's HTTPS listener serves. Upload one (`certificate_pem` \
             and the write-only `private_key_pem`): it is served for its names at once, \
             before any ACME certificate for them. Or, when the edge obtains certificates by \
             ACME (`--acme-directory`), ask for one for `names`, such as a wildcard \
             `*.apps.example.com` (validated by dns-01 from the edge's own zone), which then \
             serves every hostname it covers. Each hostname's own certificate shows on \
             `postern_hostname`'s `certificate` attribute.",
        )
        .attribute(
            "id",
            Attribute::string("The certificate's id on the edge.")
                .computed()
                .stable(),
        )
        .attribute(
            "names",
            Attribute::list(
                Type::String,
                "The names to obtain a certificate for by ACME, each inside one of the edge's \
                 zones (a wildcard such as `*.apps.example.com` needs the dns-01 challenge). \
                 For an upload, leave it unset: it is read from the certificate.",
            )
            .optional()
            .computed()
            .stable()
            .requires_replace(),
        )
        .attribute(
            "certificate_pem",
            Attribute::string(
                "The certificate chain to upload, PEM: the certificate first, then its \
                 intermediates. It must not have expired and must name DNS names. A renewed \
                 certificate is a new upload, with its key.",
            )
            .optional()
            .requires_replace(),
        )
        .attribute(
            "private_key_pem",
            Attribute::string(
                "The uploaded certificate's private key, PEM. Write-only (Terraform 1.11 or \
                 later): sent to the edge when the certificate is created, never stored in plan \
                 or state, and never returned by the edge.",
            )
            .optional()
            .sensitive()
            .write_only(),
        )
        .attribute(
            "source",
            Attribute::string("`uploaded`, or `acme` for one the edge obtains.").computed(),
        )
        .attribute(
            "status",
            Attribute::string(
                "`pending` (being obtained), `valid` (served), or `failed` (see `last_error`).",
            )
            .computed(),
        )
        .attribute(
            "not_after",
            Attribute::string("When it expires (RFC 3339); null until one was issued.").computed(),
        )
        .attribute(
            "last_error",
            Attribute::string(
                "Why obtaining or renewing it last failed; null after a success. A certificate \
                 that is still valid keeps being served while renewing fails.",
            )
            .computed(),
        )
    }

    fn validate(&self, config: &Value, diagnostics: &mut Diagnostics) {
        let mut findings = Findings::new();
        let set = |name: &str| {
            config
                .get(name)
                .is_some_and(|v| !v.is_null() && !v.is_unknown())
        };
        let unset = |name: &str| config.get(name).is_none_or(Value::is_null);
        if set("names") && (set("certificate_pem") || set("private_key_pem")) {
            findings.add(
                AttributePath::root("names"),
                "set names (to obtain a certificate by ACME), or certificate_pem and \
                 private_key_pem (to upload one), not both",
            );
        } else if unset("names") && unset("certificate_pem") && unset("private_key_pem") {
            findings.add(
                AttributePath::root("certificate_pem"),
                "set names (to obtain a certificate by ACME), or certificate_pem and \
                 private_key_pem (to upload one)",
            );
        } else if set("certificate_pem") && unset("private_key_pem") {
            findings.add(
                AttributePath::root("private_key_pem"),
                "an uploaded certificate needs its private_key_pem",
            );
        } else if set("private_key_pem") && unset("certificate_pem") {
            findings.add(
                AttributePath::root("certificate_pem"),
                "private_key_pem needs the certificate_pem it belongs to",
            );
        }
        for (i, name) in known_elements(config, "names") {
            if let Some(name) = name.as_str() {
                findings.rule(
                    AttributePath::root("names").index(i as i64),
                    rules::check_fqdn(name.strip_prefix("*.").unwrap_or(name)),
                );
            }
        }
        if let Some(pem) = known_str(config, "certificate_pem")
            && !pem.contains("-----BEGIN CERTIFICATE-----")
        {
            findings.add(
                AttributePath::root("certificate_pem"),
                "certificate_pem must be a PEM certificate chain (-----BEGIN CERTIFICATE-----)",
            );
        }
        findings.report(diagnostics);
    }

    async fn create(&self, data: &ProviderData, req: CreateRequest, resp: &mut StateResponse) {
        // The configuration: the plan never holds the write-only key.
        let Some(config) = resp
            .diagnostics
            .check(req.config.decode::<CertificateModel>())
        else {
            return;
        };
        let spec = CertificateSpec {
            certificate_pem: config.certificate_pem.clone(),
            private_key_pem: config.private_key_pem.clone().map(Secret::new),
            names: config
                .names
                .clone()
                .filter(|_| config.certificate_pem.is_none()),
        };
        let ty = resp.value_type().clone();
        let op = Operation {
            action: "creating",
            kind: KIND,
            object: None,
            value_type: &ty,
        };
        match data.client.create_certificate(&spec).await {
            Ok(certificate) => {
                tracing::info!(id = %certificate.id, names = ?certificate.names, "certificate created");
                resp.set_state(&CertificateModel::from_certificate(&certificate, &config));
            }
            Err(error) => resp.diagnostics.push(diagnose(&error, op)),
        }
    }

    async fn read(&self, data: &ProviderData, req: ReadRequest, resp: &mut StateResponse) {
        let Some(state) = resp
            .diagnostics
            .check(req.state.decode::<CertificateModel>())
        else {
            return;
        };
        let Some(id) = state.id.clone() else {
            resp.remove();
            return;
        };
        let ty = resp.value_type().clone();
        let op = Operation {
            action: "reading",
            kind: KIND,
            object: Some(&id),
            value_type: &ty,
        };
        match data.client.certificate(&id).await {
            Ok(certificate) => {
                resp.set_state(&CertificateModel::from_certificate(&certificate, &state));
            }
            Err(error) if error.is_not_found() => {
                tracing::info!(%id, "certificate deleted outside Terraform");
                resp.remove();
            }
            Err(error) => resp.diagnostics.push(diagnose(&error, op)),
        }
    }

    /// Every configurable attribute replaces the certificate, so an update only refreshes
    /// what the edge reports.
    async fn update(&self, data: &ProviderData, req: UpdateRequest, resp: &mut StateResponse) {
        let Some(plan) = resp
            .diagnostics
            .check(req.planned.decode::<CertificateModel>())
        else {
            return;
        };
        let Some(id) = plan.id.clone() else {
            return;
        };
        let ty = resp.value_type().clone();
        let op = Operation {
            action: "reading",
            kind: KIND,
            object: Some(&id),
            value_type: &ty,
        };
        match data.client.certificate(&id).await {
            Ok(certificate) => {
                resp.set_state(&CertificateModel::from_certificate(&certificate, &plan));
            }
            Err(error) => resp.diagnostics.push(diagnose(&error, op)),
        }
    }

    /// By id; [`Resource::read`] fills in the rest (never a chain or key: the edge does not
    /// return them).
    async fn import(&self, _data: &ProviderData, id: &str, resp: &mut StateResponse) {
        let id = id.trim();
        if id.is_empty() {
            resp.diagnostics.error(
                "Invalid certificate id",
                "Import a postern_certificate by its id, as GET /v1/certificates lists it, e.g. \
                 `terraform import postern_certificate.apps <id>`.",
            );
            return;
        }
        resp.set_state(&CertificateModel {
            id: Some(id.to_string()),
            names: None,
            certificate_pem: None,
            private_key_pem: None,
            source: None,
            status: None,
            not_after: None,
            last_error: None,
        });
    }

    async fn delete(&self, data: &ProviderData, req: DeleteRequest, diagnostics: &mut Diagnostics) {
        let Some(prior) = diagnostics.check(req.prior.decode::<CertificateModel>()) else {
            return;
        };
        let Some(id) = prior.id else {
            return;
        };
        let ty = self.schema().value_type();
        let op = Operation {
            action: "deleting",
            kind: KIND,
            object: Some(&id),
            value_type: &ty,
        };
        match data.client.delete_certificate(&id).await {
            Ok(()) => tracing::info!(%id, "certificate deleted"),
            Err(error) if error.is_not_found() => {}
            Err(error) => diagnostics.push(diagnose(&error, op)),
        }
    }
}
