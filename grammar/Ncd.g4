// Ncd.g4: the grammar of .ncd files (neural circuit diagrams as text).
//
// The grammar is newline-insensitive: a statement always starts with a name or
// a keyword, and an expression can never be followed by a name without an
// operator between them, so statements need no terminator (';' is allowed).
// Everything semantic (which names are axes, tensors, diagrams or functions)
// is decided later by sema; the grammar only fixes the shapes of phrases.
grammar Ncd;

file : item* EOF ;

item
  : importDecl
  | axisDecl
  | dtypeDefault
  | diagramDecl
  | scheduleDecl
  | ';'
  ;

importDecl   : IMPORT STRING ;
dtypeDefault : DEFAULT DTYPE name ;

axisDecl : AXIS axisItem (',' axisItem)* ;
axisItem : name ('=' sizeExpr)? ;

sizeExpr
  : sizeExpr op=('*' | '/' | '//') sizeExpr   # sizeMul
  | sizeExpr op=('+' | '-') sizeExpr          # sizeAdd
  | INT                                       # sizeInt
  | fn=name '(' sizeExpr ')'                  # sizeCall
  | name                                      # sizeAxis
  | '(' sizeExpr ')'                          # sizeParen
  ;

diagramDecl
  : DIAGRAM name '(' (tensorDecl (',' tensorDecl)*)? ')' '->' outputList block ;

outputList
  : tensorDecl (',' tensorDecl)*
  | '(' tensorDecl (',' tensorDecl)* ')'
  ;

tensorDecl : name '[' (name (',' name)*)? ']' (':' name)? ;

block : '{' stmt* '}' ;

stmt
  : PARAM tensorDecl (',' tensorDecl)*            # paramStmt
  | axisDecl                                      # axisStmt
  | lhs (',' lhs)* '=' expr                       # assignStmt
  | REPEAT (INT | SIZEOF) (asWord=name indexName=name)? block  # repeatStmt
  | ';'                                           # emptyStmt
  ;

lhs      : name ('[' (lhsIndex (',' lhsIndex)*)? ']')? (':' name)? ;
lhsIndex : name | '(' name (',' name)+ ')' ;

expr
  : op=('-' | '!') expr                                   # unaryExpr
  | expr op=('*' | '/') expr                              # mulExpr
  | expr op=('+' | '-') expr                              # addExpr
  | expr op=('<' | '<=' | '>' | '>=' | '==' | '!=') expr  # compareExpr
  | expr op='&&' expr                                     # andExpr
  | expr op='||' expr                                     # orExpr
  | primary                                               # primaryExpr
  ;

primary
  : number                                               # numberPrimary
  | INF                                                  # infPrimary
  | SIZEOF                                               # sizeofPrimary
  | '(' expr ')'                                         # parenPrimary
  | (label=callLabel ':')? callee=name ('[' (bracketItem (',' bracketItem)*)? ']')? '(' (argument (',' argument)*)? ')'
    (result='[' index (',' index)* ']')?                                                                   # callPrimary
  | tensorRef                                            # refPrimary
  ;

// A call site's name: a name, or a param path in quotes (`"h.3": Block(x)`).
callLabel : name | STRING ;

// In a call's brackets: reduction axes (`softmax[k]`) or bindings (`Attention[q = s]`).
bracketItem : name ('=' name)? ;
argument    : (name '=')? expr ;

tensorRef : name ('[' (index (',' index)*)? ']')? ;

index
  : '-' index                          # indexNeg
  | index op='*' index                 # indexMul
  | index op=('+' | '-') index         # indexAdd
  | INT                                # indexInt
  | tensorRef                          # indexRef
  | '(' name (',' name)+ ')'           # indexGroup
  | '(' index ')'                      # indexParen
  ;

scheduleDecl : SCHEDULE name (FOR STRING)? '{' scheduleItem* '}' ;
scheduleItem
  : GROUP name BY INT                   # groupItem
  | STREAM name BY INT                  # streamItem
  | LEVEL name ':' name (',' name)*     # levelItem
  | SHARD name (',' name)* OVER INT     # shardItem
  | ';'                                 # emptyScheduleItem
  ;

number : INT | FLOAT ;

// Keywords that are only keywords where the grammar expects them stay usable as names.
name : IDENT | DTYPE | FOR | GROUP | STREAM | LEVEL | BY | DEFAULT | SHARD | OVER ;

IMPORT   : 'import' ;
AXIS     : 'axis' ;
DEFAULT  : 'default' ;
DTYPE    : 'dtype' ;
DIAGRAM  : 'diagram' ;
PARAM    : 'param' ;
REPEAT   : 'repeat' ;
SCHEDULE : 'schedule' ;
FOR      : 'for' ;
GROUP    : 'group' ;
STREAM   : 'stream' ;
LEVEL    : 'level' ;
BY       : 'by' ;
SHARD    : 'shard' ;
OVER     : 'over' ;
INF      : 'inf' ;

IDENT  : [a-zA-Z_] [a-zA-Z_0-9]* ;
INT    : [0-9]+ ;
FLOAT  : [0-9]+ '.' [0-9]* EXPONENT? | '.' [0-9]+ EXPONENT? | [0-9]+ EXPONENT ;
fragment EXPONENT : [eE] [+-]? [0-9]+ ;
STRING : '"' (~["\\\r\n] | '\\' ~[\r\n])* '"' ;

// `#d` is the size of axis d; `#` followed by anything but a name starts a comment.
SIZEOF  : '#' [a-zA-Z_] [a-zA-Z_0-9]* ;
COMMENT : '#' (~[a-zA-Z_\r\n] ~[\r\n]*)? -> channel(HIDDEN) ;
WS      : [ \t\r\n]+ -> channel(HIDDEN) ;

// Any other character becomes a token the parser rejects with a located message.
UNKNOWN : . ;
