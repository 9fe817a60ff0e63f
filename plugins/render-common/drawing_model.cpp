// The drawing as data (see drawing_model.h).
#include "drawing_model.h"

namespace ncd::render {

std::string html_to_text(const std::string &html) {
  std::string out;
  for (size_t i = 0; i < html.size(); ++i) {
    char c = html[i];
    if (c == '<') {
      size_t end = html.find('>', i);
      if (end == std::string::npos) break;
      i = end;
      continue;
    }
    if (c == '&') {
      static const std::pair<const char *, char> entities[] = {
          {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}};
      bool matched = false;
      for (const auto &[entity, plain] : entities) {
        std::string_view name(entity);
        if (html.compare(i, name.size(), name) == 0) {
          out += plain;
          i += name.size() - 1;
          matched = true;
          break;
        }
      }
      if (matched) continue;
    }
    out += c;
  }
  return out;
}

void DrawingModel::open_cluster(ModelCluster cluster) {
  cluster.parent = open_.empty() ? -1 : open_.back();
  std::string key = std::to_string(cluster.parent) + "/" + cluster.name;
  auto it = cluster_index_.find(key);
  if (it == cluster_index_.end()) {
    it = cluster_index_.emplace(key, static_cast<int>(clusters.size())).first;
    clusters.push_back(std::move(cluster));
  }
  open_.push_back(it->second);
}

void DrawingModel::close_cluster() {
  if (!open_.empty()) open_.pop_back();
}

ModelNode &DrawingModel::add_node(const std::string &name) {
  node_index_[name] = static_cast<int>(nodes.size());
  nodes.emplace_back();
  nodes.back().name = name;
  nodes.back().cluster = open_.empty() ? -1 : open_.back();
  return nodes.back();
}

void DrawingModel::add_strip(const std::string &name, const std::string &rows_html) {
  ModelNode &node = add_node(name);
  node.strip = true;
  for (size_t at = rows_html.find("<TD"); at != std::string::npos; at = rows_html.find("<TD", at + 3)) {
    size_t open_end = rows_html.find('>', at);
    size_t close = rows_html.find("</TD>", open_end);
    if (open_end == std::string::npos || close == std::string::npos) break;
    std::string attributes = rows_html.substr(at, open_end - at);
    std::string body = rows_html.substr(open_end + 1, close - open_end - 1);
    StripRow row;
    auto attribute = [&](const char *key) {
      std::string prefix = std::string(key) + "=\"";
      size_t p = attributes.find(prefix);
      if (p == std::string::npos) return std::string();
      p += prefix.size();
      return attributes.substr(p, attributes.find('"', p) - p);
    };
    row.port = attribute("PORT");
    row.fill = attribute("BGCOLOR");
    row.bold = body.find("<B>") != std::string::npos;
    row.italic = body.find("<I>") != std::string::npos;
    row.text = html_to_text(body);
    node.rows.push_back(std::move(row));
  }
}

int DrawingModel::find(const std::string &name) const {
  auto it = node_index_.find(name);
  return it == node_index_.end() ? -1 : it->second;
}

void DrawingModel::add_edge(const parts::Endpoint &from, const parts::Endpoint &to, ModelEdge edge) {
  edge.from = find(from.node);
  edge.to = find(to.node);
  if (edge.from < 0 || edge.to < 0) return;
  edge.from_port = from.port;
  edge.to_port = to.port;
  edges.push_back(std::move(edge));
}

}  // namespace ncd::render
