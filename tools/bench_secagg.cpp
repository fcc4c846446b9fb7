#include <iostream>
namespace federa::bench {
int secagg_main(int, char**) {
  std::cerr << "federa-bench secagg: not built yet\n";
  return 1;
}
}  // namespace federa::bench
