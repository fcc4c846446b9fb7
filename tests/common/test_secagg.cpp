#include <doctest/doctest.h>

#include "client/secagg_client.hpp"
#include "common/crypto.hpp"
#include "common/secagg.hpp"
#include "common/shamir.hpp"
#include "coordinator/secagg_server.hpp"

TEST_CASE("secagg smoke") { CHECK(true); }
