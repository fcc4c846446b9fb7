#include <iostream>
namespace federa::bench {
int aggregate_main(int, char**) {
  std::cerr << "federa-bench aggregate: not built yet\n";
  return 1;
}
}  // namespace federa::bench
