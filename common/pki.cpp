// Issuing: the CA, the coordinator's certificate, member and admin kits, and their renewal.
#include "common/pki.hpp"

#include <openssl/err.h>

#include <algorithm>

#include "common/pki_files.hpp"
#include "common/pki_x509.hpp"

namespace federa {

using namespace pki_detail;
namespace fs = std::filesystem;

namespace {

std::vector<fs::path> kit_files(const fs::path& kit) {
  return {kit / "key.pem", kit / "cert.pem", kit / "ca.pem"};
}

// Writes a kit's three files into the existing folder `kit`, the key first and owner-only.
Result<std::vector<fs::path>> write_kit(const fs::path& kit, const KitPem& pem, Rollback& rb) {
  const std::vector<fs::path> out = kit_files(kit);
  if (Status s = write_new_file(out[0], pem.key, 0600, rb); !s) return s.error();
  if (Status s = write_new_file(out[1], pem.cert, 0644, rb); !s) return s.error();
  if (Status s = write_new_file(out[2], pem.ca, 0644, rb); !s) return s.error();
  return out;
}

std::vector<std::string> coordinator_sans(const std::vector<std::string>& requested) {
  static const std::vector<std::string> defaults = {"127.0.0.1", "localhost"};
  std::vector<std::string> hosts;
  for (const std::string& h : requested.empty() ? defaults : requested)
    if (std::find(hosts.begin(), hosts.end(), h) == hosts.end()) hosts.push_back(h);
  return hosts;
}

CertSpec coordinator_spec(std::vector<std::string> hosts) {
  return CertSpec{kCoordinatorCommonName, kCoordinatorValidityDays, false,
                  "serverAuth",           std::move(hosts),         {}};
}
CertSpec client_spec(const std::string& name) {
  return CertSpec{name, kClientValidityDays, false, "clientAuth", {}, {}};
}
CertSpec admin_spec(const std::string& name, AdminRole role) {
  return CertSpec{
      name, kAdminValidityDays, false, kAdminPurposeOid, {}, std::string(admin_role_name(role))};
}

// The coordinator's folder, which the caller has checked holds none of its files.
Status write_coordinator(const fs::path& dir, const std::vector<std::string>& hosts,
                         const LoadedCa& ca, Rollback& rb) {
  auto pem = make_kit(coordinator_spec(hosts), ca);
  if (!pem) return pem.error();
  if (Status s = make_dir(dir / "coordinator", 0700, false, rb); !s) return s;
  if (auto w = write_kit(dir / "coordinator", *pem, rb); !w) return w.error();
  return Status::success();
}

// A new kit DIR/SUBDIR/NAME for `spec`; `who` ("client", "admin") words the refusal.
Result<std::vector<fs::path>> issue_kit(const fs::path& dir, const char* subdir,
                                        const std::string& name, const CertSpec& spec,
                                        const std::string& who) {
  if (Status s = validate_client_name(name); !s) return s.error();
  const fs::path parent = dir / subdir;
  const fs::path kit = parent / name;
  const std::string exists = who + " '" + name + "' already has a kit at " + quoted(kit) +
                             "; refusing to overwrite it (federa-pki renew replaces it)";
  if (Status s = refuse_existing({kit}, ""); !s)
    return make_error(ErrorCode::already_exists, exists);

  ERR_clear_error();
  auto ca = load_ca(dir);
  if (!ca) return ca.error();
  auto pem = make_kit(spec, *ca);
  if (!pem) return pem.error();
  Rollback rb;
  if (Status s = make_dir(parent, 0755, false, rb); !s) return s.error();
  // must_be_new: mkdir's EEXIST is the atomic "already has a kit" check.
  if (Status s = make_dir(kit, 0700, true, rb); !s)
    return make_error(s.code(), s.code() == ErrorCode::already_exists ? exists : s.message());
  auto written = write_kit(kit, *pem, rb);
  if (written) rb.commit();
  return written;
}

struct RenewTarget {
  fs::path kit;
  std::string common_name;
  CertificateKind kind;
};

RenewTarget renew_target(const fs::path& dir, KitKind kind, const std::string& name) {
  switch (kind) {
    case KitKind::coordinator:
      return {dir / "coordinator", kCoordinatorCommonName, CertificateKind::coordinator};
    case KitKind::admin:
      return {dir / "admins" / name, name, CertificateKind::admin};
    case KitKind::client:
      break;
  }
  return {dir / "clients" / name, name, CertificateKind::client};
}

// What the renewed certificate keeps from the old one, once the old one is checked to be the
// kit's: issued by this CA, for this name, of this kind.
Result<CertSpec> renewal_spec(const RenewTarget& target, const LoadedCa& ca) {
  const fs::path cert_pem = target.kit / "cert.pem";
  auto old = load_certificate(cert_pem, "certificate");
  if (!old) return old.error();
  // The signature, not the dates: renewing an expired certificate is the common case.
  if (X509_verify(old->get(), X509_get0_pubkey(ca.cert.get())) != 1) {
    ERR_clear_error();
    return make_error(
        ErrorCode::failed_precondition,
        quoted(cert_pem) + " was not issued by this folder's CA; refusing to renew it");
  }
  auto info = read_certificate_info(cert_pem);
  if (!info) return info.error();
  if (info->common_name != target.common_name || info->kind != target.kind)
    return make_error(ErrorCode::failed_precondition,
                      quoted(cert_pem) + " is the " +
                          std::string(certificate_kind_name(info->kind)) + " certificate of '" +
                          info->common_name + "', not what this kit should hold");
  switch (target.kind) {
    case CertificateKind::coordinator: {
      std::vector<std::string> hosts = info->ip_addresses;
      hosts.insert(hosts.end(), info->dns_names.begin(), info->dns_names.end());
      return coordinator_spec(coordinator_sans(hosts));
    }
    case CertificateKind::admin: {
      auto role = parse_admin_role(info->admin_role);
      if (!role) return role.error();
      return admin_spec(target.common_name, *role);
    }
    default:
      return client_spec(target.common_name);
  }
}

}  // namespace

Status validate_client_name(const std::string& name) {
  auto bad = [&](const std::string& why) {
    return make_error(ErrorCode::invalid_argument, "name '" + name + "' " + why);
  };
  if (name.empty()) return make_error(ErrorCode::invalid_argument, "the name is empty");
  if (name.size() > 64) return bad("is longer than 64 characters");
  if (name.front() == '.') return bad("must not start with '.'");
  for (char c : name) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return bad("may only contain letters, digits, '.', '_' and '-'");
  }
  return Status::success();
}

Result<std::vector<fs::path>> init_pki(const fs::path& dir_in,
                                       const std::vector<std::string>& coordinator_hosts) {
  if (dir_in.empty()) return make_error(ErrorCode::invalid_argument, "no PKI folder given");
  // "pki/" names the folder "pki": without this its parent would be "pki", created with 0755.
  const fs::path dir = dir_in.has_filename() ? dir_in : dir_in.parent_path();
  const fs::path ca_pem = dir / "ca.pem", ca_key = dir / "ca.key";
  // All checks before any write: a refusal leaves the folder exactly as it was.
  if (Status s = refuse_existing({ca_pem, ca_key},
                                 ": " + quoted(dir) +
                                     " already holds a federation CA (choose another --dir, or "
                                     "move the old PKI away yourself)");
      !s)
    return s.error();
  if (Status s = refuse_existing(kit_files(dir / "coordinator"), ""); !s) return s.error();
  const std::vector<std::string> hosts = coordinator_sans(coordinator_hosts);
  if (Status s = check_hosts(hosts); !s) return s.error();

  ERR_clear_error();
  auto ca_private = generate_key();
  if (!ca_private) return ca_private.error();
  auto ca_cert = make_certificate(CertSpec{kCaCommonName, kCaValidityDays, true, nullptr, {}, {}},
                                  ca_private->get(), nullptr, nullptr);
  if (!ca_cert) return ca_cert.error();
  auto ca_pem_text = cert_to_pem(ca_cert->get());
  if (!ca_pem_text) return ca_pem_text.error();
  auto ca_key_text = key_to_pem(ca_private->get());
  if (!ca_key_text) return ca_key_text.error();
  const LoadedCa ca{std::move(*ca_cert), std::move(*ca_private)};

  Rollback rb;
  std::error_code ec;
  if (!fs::exists(dir, ec) && dir.has_parent_path()) {
    fs::create_directories(dir.parent_path(), ec);
    if (ec)
      return make_error(ErrorCode::unavailable,
                        "cannot create folder " + quoted(dir.parent_path()) + ": " + ec.message());
  }
  if (Status s = make_dir(dir, 0700, false, rb); !s) return s.error();
  // ca.key first: its O_EXCL create is what makes two concurrent inits exclude each other.
  if (Status s = write_new_file(ca_key, *ca_key_text, 0600, rb); !s) return s.error();
  if (Status s = write_new_file(ca_pem, *ca_pem_text, 0644, rb); !s) return s.error();
  if (Status s = write_coordinator(dir, hosts, ca, rb); !s) return s.error();
  rb.commit();
  std::vector<fs::path> written = {ca_key, ca_pem};
  for (const fs::path& p : kit_files(dir / "coordinator")) written.push_back(p);
  return written;
}

Result<std::vector<fs::path>> issue_coordinator(const fs::path& dir,
                                                const std::vector<std::string>& coordinator_hosts) {
  if (dir.empty()) return make_error(ErrorCode::invalid_argument, "no PKI folder given");
  if (Status s = refuse_existing({dir / "coordinator"},
                                 " (federa-pki renew --coordinator replaces it, keeping its names;"
                                 " to change the names, move it away first)");
      !s)
    return s.error();
  const std::vector<std::string> hosts = coordinator_sans(coordinator_hosts);
  if (Status s = check_hosts(hosts); !s) return s.error();
  ERR_clear_error();
  auto ca = load_ca(dir);
  if (!ca) return ca.error();
  Rollback rb;
  if (Status s = write_coordinator(dir, hosts, *ca, rb); !s) return s.error();
  rb.commit();
  return kit_files(dir / "coordinator");
}

Result<std::vector<fs::path>> issue_client(const fs::path& dir, const std::string& name) {
  return issue_kit(dir, "clients", name, client_spec(name), "client");
}

Result<std::vector<fs::path>> issue_admin(const fs::path& dir, const std::string& name,
                                          AdminRole role) {
  return issue_kit(dir, "admins", name, admin_spec(name, role), "admin");
}

Result<std::vector<fs::path>> renew_kit(const fs::path& dir, KitKind kind,
                                        const std::string& name) {
  if (kind != KitKind::coordinator)
    if (Status s = validate_client_name(name); !s) return s.error();
  const RenewTarget target = renew_target(dir, kind, name);
  std::error_code ec;
  if (!fs::is_directory(target.kit, ec))
    return make_error(ErrorCode::not_found, "there is no kit at " + quoted(target.kit) +
                                                " to renew (federa-pki issue creates one)");
  ERR_clear_error();
  auto ca = load_ca(dir);
  if (!ca) return ca.error();
  auto spec = renewal_spec(target, *ca);
  if (!spec) return spec.error();
  auto pem = make_kit(*spec, *ca);
  if (!pem) return pem.error();

  auto staging = make_staging_dir(target.kit);
  if (!staging) return staging.error();
  Rollback rb;
  rb.add(*staging);
  if (auto w = write_kit(*staging, *pem, rb); !w) return w.error();
  auto old_contents = replace_folder(*staging, target.kit);
  if (!old_contents) return old_contents.error();
  rb.commit();
  fs::remove_all(*old_contents, ec);
  if (ec)
    return make_error(ErrorCode::unavailable, "the renewed kit is in place, but the old one at " +
                                                  quoted(*old_contents) +
                                                  " could not be removed: " + ec.message());
  return kit_files(target.kit);
}

}  // namespace federa
