// federa-admin's human output: the admin API's JSON as short sentences and aligned tables.
//
//   print_clients(boost::json::parse(reply.body));
//   NAME     STATE      SINCE                     ADDRESS          ROUNDS  LAST
//   site-a   connected  2025-05-01T12:00:00.123Z  127.0.0.1:51234  12/12   accepted (round 12)
#pragma once

#include <boost/json/value.hpp>
#include <string>

namespace federa::admin_cli {

void print_status(const boost::json::value& v);
void print_clients(const boost::json::value& v);
void print_rounds(const boost::json::value& v);
void print_round(const boost::json::value& v);
void print_members(const boost::json::value& v);
void print_control(const std::string& command, bool after_round);

}  // namespace federa::admin_cli
