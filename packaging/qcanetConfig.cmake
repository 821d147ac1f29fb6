# CMake package for qcanet: find_package(qcanet) gives the imported target qcanet::qcanet.
get_filename_component(_qcanet_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
if(NOT TARGET qcanet::qcanet)
  add_library(qcanet::qcanet SHARED IMPORTED)
  set_target_properties(qcanet::qcanet PROPERTIES
    IMPORTED_LOCATION "${_qcanet_prefix}/lib/libqcanet.so"
    IMPORTED_NO_SONAME TRUE
    INTERFACE_INCLUDE_DIRECTORIES "${_qcanet_prefix}/include")
endif()
set(qcanet_INCLUDE_DIRS "${_qcanet_prefix}/include")
set(qcanet_LIBRARIES qcanet::qcanet)
set(qcanet_FOUND TRUE)
unset(_qcanet_prefix)
