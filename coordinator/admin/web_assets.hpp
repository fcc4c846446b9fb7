// The dashboard's files (coordinator/admin/web/), built into the program at build time by
// embed_web.cmake: nothing is fetched from a CDN and nothing is built at run time.
//
//   const WebAsset* a = find_web_asset("app.js");   // nullptr for any other name
//   if (a) reply(200, a->content_type, a->body, a->etag);
#pragma once

#include <string_view>

namespace federa::admin {

struct WebAsset {
  std::string_view name;          // "index.html", "app.js", "style.css"
  std::string_view content_type;  // "text/html; charset=utf-8", ...
  std::string_view body;
  std::string_view etag;  // "\"<16 hex digits of the file's SHA-256>\""
};

const WebAsset* find_web_asset(std::string_view name);

}  // namespace federa::admin
