# ncd_add_plugin(NAME SOURCES...): builds an ncd plugin as a loadable module
# named ncd-plugin-NAME.so, linked against the ncd SDK. Works in the ncd build
# tree and, through find_package(ncd), out of tree.
function(ncd_add_plugin name)
  set(target ncd-plugin-${name})
  add_library(${target} MODULE ${ARGN})
  if(TARGET ncd::core)
    target_link_libraries(${target} PRIVATE ncd::core)
  else()
    target_link_libraries(${target} PRIVATE ncd_core)
  endif()
  set_target_properties(${target} PROPERTIES
    PREFIX "" OUTPUT_NAME ${target}
    CXX_STANDARD 20 CXX_STANDARD_REQUIRED ON
    CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
  if(NCD_PLUGIN_OUTPUT_DIRECTORY)
    # Inside the ncd build: plugins sit beside bin/ and install to <prefix>/lib/ncd/plugins.
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${NCD_PLUGIN_OUTPUT_DIRECTORY}
      INSTALL_RPATH "$ORIGIN/../..")
    set_property(GLOBAL APPEND PROPERTY NCD_PLUGINS ${target})
  endif()
endfunction()
